"""Bake: plan (base image, fingerprint, skip), then Packer with builder's provisioning."""
