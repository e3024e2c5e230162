"""Ansible: the syntax check, and (for bake) the playbook run through ansible-runner.

Only this module imports ansible_runner.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builder import process
from builder.errors import Problem
from builder.layout import Layout

# ansible-core 2.19 says "Origin: FILE:LINE:COL"; older releases "appears to be in 'FILE': line N".
_LOCATION_RE = re.compile(
    r"(?:Origin: (?P<file>/[^:\s]+):(?P<line>\d+)"
    r"|The error appears to be in '(?P<file_old>[^']+)': line (?P<line_old>\d+))"
)
_ERROR_RE = re.compile(r"^(?:\[ERROR\]|ERROR!):?\s*(?P<message>.+)$", re.MULTILINE)


def tool(name: str) -> str:
    """An Ansible command from the same environment as builder itself."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else process.require(name, "run `make setup`")


def base_env(layout: Layout) -> dict[str, str]:
    """Settings every Ansible run of builder shares: the roles search path (the repo's
    roles, then the bundled ones) and no cows, retry files or host key prompts."""
    return {
        "ANSIBLE_ROLES_PATH": os.pathsep.join(str(p) for p in layout.roles_dirs()),
        "ANSIBLE_NOCOWS": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "ANSIBLE_FORCE_COLOR": "0",
    }


def syntax_check(layout: Layout, playbook: Path, extravars: Mapping[str, Any]) -> list[Problem]:
    """`ansible-playbook --syntax-check`, each error with its file and line."""
    with tempfile.TemporaryDirectory(prefix="builder-syntax-") as tmp:
        vars_file = Path(tmp) / "extravars.json"
        vars_file.write_text(json.dumps(dict(extravars), default=str), encoding="utf-8")
        done = process.run(
            [tool("ansible-playbook"), "--syntax-check", "-i", "localhost,",
             "-e", f"@{vars_file}", str(playbook)],
            what="ansible syntax check", cwd=layout.root, env=base_env(layout), check=False,
        )
    if done.returncode == 0:
        return []
    output = done.stderr + done.stdout
    where = _LOCATION_RE.search(output)
    found = _ERROR_RE.search(output)
    message = found["message"].strip() if found else output.strip().splitlines()[-1]
    if where:
        file, line = where["file"] or where["file_old"], where["line"] or where["line_old"]
        return [Problem(f"ansible syntax: {message}", Path(file), int(line))]
    return [Problem(f"ansible syntax: {message}", playbook)]
