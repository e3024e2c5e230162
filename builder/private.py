"""Folders and files only their owner can read: what builder keeps under `.builder/`
(rendered templates, resolved vars, Packer's log and output, fingerprints, results,
release records, Ansible events) and what it hands its tools in private temp folders.

Every write there goes through these helpers, Packer (its log, manifest and cache) gets
CHILD_UMASK, and what ansible-galaxy installs is tightened afterwards, so nothing
depends on the user's umask.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

FOLDER_MODE = 0o700
FILE_MODE = 0o600
# For a child that writes under `.builder/`: its files 0600 (0700 when executable).
CHILD_UMASK = 0o077


def make_folders(folder: Path) -> Path:
    """`folder` and every missing folder above it, each 0700 (Path.mkdir(parents=True)
    would make the upper ones with the umask's mode)."""
    missing = [folder, *folder.parents]
    for index, path in enumerate(missing):
        if os.path.lexists(path):  # a file there: the mkdir below it says so (ENOTDIR)
            missing = missing[:index]
            break
    for path in reversed(missing):
        path.mkdir(mode=FOLDER_MODE, exist_ok=True)
    return folder


def open_text(path: Path) -> IO[str]:
    """`path` emptied (or made) for writing text, readable by its owner only (an existing
    file is tightened too)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(descriptor, FILE_MODE)
    except OSError:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "w", encoding="utf-8")


def tighten(folder: Path) -> None:
    """Everything under `folder` (made by another program) its owner's only: the group's
    and others' bits cleared, the owner's (an executable stays executable) kept."""
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & 0o700)


def write_text(path: Path, text: str) -> Path:
    """`path` holds `text` and only its owner can read it."""
    with open_text(path) as handle:
        handle.write(text)
    return path
