"""Ansible plugins builder loads into its own runs (found through ANSIBLE_*_PLUGINS)."""
