"""Where things live: the infra repo (the contract in docs/architecture.md, "The infra
repo") and what ships with the tool."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from builder.errors import ConfigError, InputError, shown_path

NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]*")

_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def bundled_root() -> Path:
    """The folder holding the tool's own `packer/` and `playbooks/roles/`.

    A wheel carries them in `builder/_bundled`; an editable install reads the checkout.
    """
    packaged = _PACKAGE_DIR / "_bundled"
    return packaged if packaged.is_dir() else _PACKAGE_DIR.parent


def check_name(kind: str, name: str, *, file: Path | None = None, line: int | None = None) -> str:
    """App, env and comp names become path parts and resource names: keep them plain."""
    if not NAME_RE.fullmatch(name):
        raise ConfigError(
            f"{kind} name {name!r} must match [a-z0-9][a-z0-9-]* (lowercase letters, digits, '-')",
            file=file,
            line=line,
        )
    return name


def find_root(explicit: str | None = None) -> Path:
    """`--root`, else BUILDER_ROOT, else the nearest folder upward holding `vars/`."""
    given = explicit or os.environ.get("BUILDER_ROOT")
    if given:
        root = Path(given).expanduser().resolve()
        if not (root / "vars").is_dir():
            raise InputError(f"{root}: not an infra repo (no vars/ folder)")
        return root
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "vars").is_dir():
            return candidate
    raise InputError(
        f"no infra repo found from {here} upward (a folder with vars/); use --root DIR"
    )


@dataclass(frozen=True)
class Layout:
    """Paths inside one infra repo, with the bundled fallbacks for templates and roles."""

    root: Path

    @property
    def vars_dir(self) -> Path:
        return self.root / "vars"

    @property
    def state_dir(self) -> Path:
        """Tool state (builds, releases, local stack): ignored by git."""
        return self.root / ".builder"

    @cached_property
    def bundled(self) -> Path:
        return bundled_root()

    def apps(self) -> list[str]:
        return _subfolders(self.vars_dir)

    def envs(self, app: str) -> list[str]:
        return [name for name in _subfolders(self.vars_dir / app) if name != "common"]

    def layer_files(self, app: str, env: str, comp: str | None) -> list[Path]:
        """The config layers, lowest first (files that may not exist included); see
        docs/architecture.md, "Vars layers and precedence"."""
        base = self.vars_dir / app
        files = [base / "common" / "common.yml"]
        if comp is not None:
            files.append(base / "common" / f"{comp}.yml")
        files.append(base / env / "common.yml")
        if comp is not None:
            files.append(base / env / f"{comp}.yml")
        return files

    def template_dirs(self) -> list[Path]:
        return _dedup([self.root / "packer", self.bundled / "packer"])

    def roles_dirs(self) -> list[Path]:
        return _dedup([self.root / "playbooks" / "roles", self.bundled / "playbooks" / "roles"])

    def relative(self, path: Path) -> str:
        """A path as users see it: relative to the root when inside it."""
        return str(shown_path(path, self.root))


def _subfolders(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in folder.iterdir()
                  if entry.is_dir() and not entry.name.startswith("."))


def _dedup(paths: list[Path]) -> list[Path]:
    seen: list[Path] = []
    for path in paths:
        if path.resolve() not in [p.resolve() for p in seen]:
            seen.append(path)
    return seen
