"""Render: the Packer template (Jinja, then HCL2) and its var file for one combo."""
