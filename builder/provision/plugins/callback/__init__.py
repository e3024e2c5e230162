"""Ansible callback plugins that ansible-playbook loads for builder."""
