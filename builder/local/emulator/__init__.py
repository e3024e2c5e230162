"""The local AWS emulator: moto in server mode with builder's patches and a CodeDeploy
deployment emulator."""
