"""builder's private temporary folders on this host (0700, under $TMPDIR: a bake's SSH
key and provisioning socket, Ansible's vault password file, ...).

Their names carry the pid of the process that made them, so `builder reap` removes
the ones a killed run left (the secrets in them included) and leaves live runs' alone.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from builder import process

_NAME = re.compile(r"builder-(?P<kind>[a-z]+)-(?P<pid>\d+)-.+")


def prefix(kind: str) -> str:
    """The name prefix of a private folder of `kind` made by this process."""
    return f"builder-{kind}-{os.getpid()}-"


def leftovers(older_than: datetime) -> list[Path]:
    """The private folders whose process is gone, or (made before their names carried a
    pid) that are older than `older_than`."""
    found = []
    for folder in sorted(Path(tempfile.gettempdir()).glob("builder-*")):
        if not folder.is_dir() or folder.is_symlink():
            continue
        named = _NAME.fullmatch(folder.name)
        if named is not None:
            gone = not process.alive(int(named["pid"]))
        else:
            try:
                changed = datetime.fromtimestamp(folder.stat().st_mtime, UTC)
            except OSError:
                continue
            gone = changed < older_than
        if gone:
            found.append(folder)
    return found


def remove(folders: list[Path]) -> None:
    """Delete builder's private temp folders (`reap`), whatever they hold."""
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)

