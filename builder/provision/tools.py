"""Where builder finds Ansible's commands: beside its own Python first."""

from __future__ import annotations

import sys
from pathlib import Path

from builder import process


def tool(name: str) -> str:
    """An Ansible command from the same environment as builder itself."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else process.require(name, "run `make setup`")
