"""Provision: ansible-runner over direct SSH, Packer's callback into builder, and the
bundled hygiene and check playbooks."""
