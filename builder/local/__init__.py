"""Local mode: the embedded AWS emulator and the local build host."""
