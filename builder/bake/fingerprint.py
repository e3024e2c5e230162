"""The fingerprint of a bake: one hash of every input that shapes the image.

Inputs: the rendered template and its config-derived Packer vars, the playbook with
every file and role it uses (roles' own dependencies and include/import_role
included), the tool's own provisioning (hygiene and checks), every resolved var (what
Ansible gets; a comment-only change to a vars file changes nothing), the env's vault
files, and the resolved source AMI id. A bake whose fingerprint matches an available
AMI is skipped.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from builder.config.layers import ResolvedVars
from builder.config.layout import Layout
from builder.render.template import Rendered

_ROLE_TASK_KEYS = ("include_role", "import_role", "ansible.builtin.include_role",
                   "ansible.builtin.import_role")
_FILE_TASK_KEYS = ("include_tasks", "import_tasks", "ansible.builtin.include_tasks",
                   "ansible.builtin.import_tasks", "import_playbook",
                   "ansible.builtin.import_playbook", "include_vars",
                   "ansible.builtin.include_vars")
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_BLOCK_KEYS = ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always")


@dataclass(frozen=True)
class Fingerprint:
    """The hash of every input of a bake, and the inputs themselves (so `rebuild` can
    name what changed)."""

    value: str
    inputs: Mapping[str, Any]  # what was hashed, per part (saved with the build)


@dataclass
class FileCache:
    """What one command learns about files: which ones a playbook uses and their digests.

    Files don't change while a command runs, and `rebuild` fingerprints hundreds of
    combos that share a few playbooks and roles.
    """

    walks: dict[Path, frozenset[Path]] = field(default_factory=dict)
    digests: dict[Path, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def playbook_files(self, layout: Layout, playbook: Path) -> frozenset[Path]:
        with self._lock:
            if playbook not in self.walks:
                self.walks[playbook] = frozenset(_playbook_files(layout, playbook))
            return self.walks[playbook]

    def digest(self, path: Path) -> str:
        with self._lock:
            if path not in self.digests:
                self.digests[path] = _file_digest(path)
            return self.digests[path]


def compute(layout: Layout, resolved: ResolvedVars, rendered: Rendered, source_ami: str,
            tool_files: Iterable[Path] = (), cache: FileCache | None = None) -> Fingerprint:
    """Fingerprint one combo: template, Packer vars, playbook files and roles, the
    tool's own files, vars, vault files and the base image."""
    cache = cache or FileCache()
    # A playbook's vars_files that are config layers of this combo count through the
    # resolved vars (Ansible gets each of their values as an extra var), not as text.
    files = ((cache.playbook_files(layout, resolved.playbook_path) | set(tool_files))
             - {layer.resolve() for layer in resolved.files})
    inputs = {
        "template": rendered.digest(),
        "files": {_label(layout, path): cache.digest(path) for path in sorted(files)},
        "vars": _digest(json.dumps(dict(resolved.values), sort_keys=True, default=str)),
        "vault": {_label(layout, path): cache.digest(path)
                  for path in _vault_files(layout, resolved)},
        "source_ami": source_ami,
    }
    value = _digest(json.dumps(inputs, sort_keys=True))
    return Fingerprint(value, inputs)


def changed_parts(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two fingerprints' inputs, in words ("role base", "vars")."""
    changes = [part for part in ("template", "vars", "source_ami")
               if old.get(part) != new.get(part)]
    for part in ("files", "vault"):
        before, after = old.get(part, {}), new.get(part, {})
        changes.extend(name for name in sorted(set(before) | set(after))
                       if before.get(name) != after.get(name))
    return changes


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def _label(layout: Layout, path: Path) -> str:
    """A name for a hashed file that doesn't depend on where builder is installed."""
    # Bundled playbooks keep the label they had before the package was split into
    # folders, so upgrading builder does not change every fingerprint.
    for base, prefix in ((_PACKAGE_DIR / "provision", "<builder>/"), (_PACKAGE_DIR, "<builder>/"),
                         (layout.root, ""),
                         (layout.bundled, "<bundled>/")):
        if path.is_relative_to(base):
            return prefix + str(path.relative_to(base))
    return str(path)


def _vault_files(layout: Layout, resolved: ResolvedVars) -> list[Path]:
    combo = resolved.combo
    folders = [layout.vars_dir / combo.app / "common", layout.vars_dir / combo.app / combo.env]
    return sorted(p for folder in folders if folder.is_dir() for p in folder.glob("*.vault.yml"))


def _playbook_files(layout: Layout, playbook: Path) -> set[Path]:
    """The playbook, the files it includes, and every file of every role it uses."""
    found: set[Path] = set()
    roles: set[str] = set()
    _walk_yaml_file(playbook, found, roles)
    done: set[str] = set()
    while roles - done:
        name = min(roles - done)
        done.add(name)
        folder = _role_dir(layout, playbook.parent, name)
        if folder is None:
            continue  # Ansible's own check reports a missing role; nothing to hash
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            found.add(path)
            if path.suffix in (".yml", ".yaml"):
                _walk_yaml_file(path, set(), roles)
        meta = _load(folder / "meta" / "main.yml")
        if isinstance(meta, dict):
            for dependency in meta.get("dependencies") or []:
                roles.update(_role_names([dependency]))
    return found


def _role_dir(layout: Layout, playbook_dir: Path, name: str) -> Path | None:
    for base in (playbook_dir / "roles", *layout.roles_dirs()):
        if (base / name).is_dir():
            return base / name
    return None


def _walk_yaml_file(path: Path, files: set[Path], roles: set[str]) -> None:
    if path in files or not path.is_file():
        return
    files.add(path)
    for item in _items(_load(path)):
        roles.update(_role_names(item.get("roles") or []))
        for key in _ROLE_TASK_KEYS:
            value = item.get(key)
            if isinstance(value, dict) and isinstance(value.get("name"), str):
                roles.add(value["name"])
            elif isinstance(value, str):
                roles.add(value)
        for key in _FILE_TASK_KEYS:
            value = item.get(key)
            if isinstance(value, dict):
                value = value.get("file")
            if isinstance(value, str) and "{{" not in value:
                _walk_yaml_file((path.parent / value).resolve(), files, roles)
        for vars_file in item.get("vars_files") or []:
            if isinstance(vars_file, str) and "{{" not in vars_file:
                files.add((path.parent / vars_file).resolve())


def _items(document: Any) -> Iterator[dict[str, Any]]:
    """Every play and task mapping in a playbook or task file, blocks flattened."""
    if isinstance(document, list):
        for item in document:
            yield from _items(item)
    elif isinstance(document, dict):
        yield document
        for key in _BLOCK_KEYS:
            yield from _items(document.get(key))


def _role_names(entries: Iterable[Any]) -> set[str]:
    names = set()
    for entry in entries:
        name = entry if isinstance(entry, str) else (
            (entry.get("role") or entry.get("name")) if isinstance(entry, dict) else None)
        if isinstance(name, str) and "{{" not in name:
            names.add(name)
    return names


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (yaml.YAMLError, UnicodeDecodeError):
        return None  # templates and non-YAML files are hashed, not walked
