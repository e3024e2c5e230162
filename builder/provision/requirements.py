"""The repo's `requirements.yml`: roles and collections installed once into a cache.

Found at the repo's root, in the folder of its ansible.cfg and in the playbook's folder,
each as `requirements.yml`, `collections/requirements.yml` or `roles/requirements.yml`.
They are installed with `ansible-galaxy` (galaxy, git, URL, tarball and folder sources
alike), run from the ansible.cfg's folder (else the root) as users run it, into
`.builder/ansible-requirements/<key>/`, where the key hashes the files and the
ansible-core version: an unchanged set is installed once and reused. What the repo
vendors in its roles path comes first; the installed roles and collections after it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from builder import private, process
from builder.config.layout import Layout
from builder.errors import InputError, ProcessFailed
from builder.provision.ansible_cfg import AnsibleConfig
from builder.provision.tools import tool

_NAMES = ("requirements.yml", "collections/requirements.yml", "roles/requirements.yml")
_DONE = ".installed"
_ERROR_RE = re.compile(r"^(?:\[ERROR\]|ERROR!|ansible-galaxy: error):?\s*(?P<message>.+)$",
                       re.MULTILINE)


@dataclass(frozen=True)
class Installed:
    """Where a requirements set went: roles and collections folders, and its key."""

    key: str
    roles: Path
    collections: Path


def files(layout: Layout, config: AnsibleConfig, playbook: Path) -> list[Path]:
    """The requirements files of a playbook's run, in a stable order."""
    folders = [layout.root, *([config.folder] if config.folder else []), playbook.parent]
    found: list[Path] = []
    for folder in folders:
        for name in _NAMES:
            path = (folder / name).resolve()
            if path.is_file() and path not in found:
                found.append(path)
    return found


def planned(layout: Layout, config: AnsibleConfig, playbook: Path) -> Installed | None:
    """Where the playbook's requirements go (installed or not); None without any."""
    wanted = files(layout, config, playbook)
    if not wanted:
        return None
    digest = hashlib.sha256(_ansible_version().encode())
    for path in wanted:
        digest.update(str(path.relative_to(layout.root)
                          if path.is_relative_to(layout.root) else path).encode())
        digest.update(path.read_bytes())
    key = digest.hexdigest()[:16]
    target = layout.state_dir / "ansible-requirements" / key
    return Installed(key, target / "roles", target / "collections")


def ensure(layout: Layout, config: AnsibleConfig, playbook: Path) -> Installed | None:
    """Install the playbook's requirements unless this set is already installed (None
    when there are none). A source that can't be had is bad input naming the entry."""
    where = planned(layout, config, playbook)
    if where is None:
        return None
    wanted = files(layout, config, playbook)
    key = where.key
    base = layout.state_dir / "ansible-requirements"
    target = base / key
    if (target / _DONE).is_file():
        return where
    private.make_folders(base)
    partial = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=base))
    try:
        for path in wanted:
            _install(path, partial, config.folder or layout.root, layout)
        private.tighten(partial)  # ansible-galaxy sets the modes its archives name
        private.write_text(partial / _DONE, "\n".join(str(p) for p in wanted) + "\n")
        if target.exists():  # installed by a parallel bake meanwhile: theirs is as good
            shutil.rmtree(partial)
        else:
            partial.rename(target)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return where


def _install(path: Path, into: Path, cwd: Path, layout: Layout) -> None:
    # With a roles folder of its own, `install -r` skips collections: one run per kind.
    env = {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    try:
        for kind, folder in (("role", into / "roles"), ("collection", into / "collections")):
            process.run([tool("ansible-galaxy"), kind, "install", "-r", str(path),
                         "-p", str(folder)],
                        what=f"installing the {kind}s of {layout.relative(path)}", cwd=cwd,
                        env=env)
    except ProcessFailed as exc:
        found = _ERROR_RE.search(exc.output_tail)
        why = found["message"].strip() if found else (exc.output_tail.strip().splitlines()
                                                      or [exc.message])[-1]
        raise InputError(f"can't install its requirements: {why}", file=path) from exc


@cache
def _ansible_version() -> str:
    """ansible-core's version (part of the cache key): from the package metadata when
    builder's environment holds it (no process to start), else from ansible-galaxy."""
    try:
        return "ansible-core " + importlib.metadata.version("ansible-core")
    except importlib.metadata.PackageNotFoundError:
        done = process.run([tool("ansible-galaxy"), "--version"],
                           what="ansible-galaxy --version", env={"ANSIBLE_NOCOLOR": "1"})
        return done.stdout.splitlines()[0] if done.stdout else "unknown"
