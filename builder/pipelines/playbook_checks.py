"""What `validate` checks in a comp's playbook without running anything: the
vars_files entries that reach no file, the roles no roles path holds, and the files
named `*.vault.yml` that are not encrypted; and which vault-encrypted files the play
reaches (the syntax check needs their password, or stands them in)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.bake.fingerprint import is_vault_encrypted, render_path
from builder.config.layers import ResolvedVars
from builder.errors import Problem
from builder.project import Project
from builder.provision import ansible_cfg

_VAULT_SUFFIXES = (".vault.yml", ".vault.yaml")


@dataclass(frozen=True)
class PlaybookFindings:
    """What `validate` finds in a combo's play beyond Ansible's own syntax check."""

    problems: tuple[Problem, ...]
    encrypted: tuple[Path, ...]  # vault-encrypted files the play reaches, sorted


def check(project: Project, resolved: ResolvedVars) -> PlaybookFindings:
    """vars_files that reach no file, roles no roles path holds, vault files the play
    loads (and which of them are not encrypted)."""
    layout = project.layout
    playbook = resolved.playbook_path
    walk = project.file_cache.playbook_files(layout, playbook)
    problems: list[Problem] = []
    for entry in walk.vars_files:
        base = entry.referrer.parent
        paths = [render_path(base, c, resolved.values) if "{" in c else (base / c).resolve()
                 for c in entry.candidates]
        if not paths or any(p is None for p in paths):
            continue  # named by a fact or a loop var: only the run knows
        if not any(p is not None and p.is_file() for p in paths):
            shown = ", ".join(layout.relative(p) for p in paths if p is not None)
            problems.append(Problem(
                f"vars_files: {entry.candidates[0]!r} reaches no file ({shown}) from "
                f"{layout.relative(base)}/", entry.referrer,
                _line_of(entry.referrer, entry.candidates[0])))
    if walk.missing_roles:
        config = ansible_cfg.find(layout, playbook)
        searched = [playbook.parent / "roles", *config.paths(ansible_cfg.ROLES_PATH),
                    *layout.roles_dirs()]
        where = ", ".join(layout.relative(p) for p in dict.fromkeys(searched))
        for name, referrer in walk.missing_roles:
            problems.append(Problem(f"role {name!r} not found (roles path: {where})",
                                    referrer, _line_of(referrer, name)))
    reached = walk.files | walk.rendered(resolved.values) | _app_vars_files(project, resolved)
    for path in sorted(reached):
        if path.name.endswith(_VAULT_SUFFIXES) and path.is_file() \
                and not is_vault_encrypted(path):
            problems.append(Problem("named like a vault file but not encrypted: "
                                    "`ansible-vault encrypt` it (or rename it)", path, 1))
    encrypted = tuple(sorted(p for p in reached if p.is_file() and is_vault_encrypted(p)))
    return PlaybookFindings(tuple(problems), encrypted)


def _app_vars_files(project: Project, resolved: ResolvedVars) -> set[Path]:
    """The app's common and env vars folders: where its vault files live by convention."""
    base = project.layout.vars_dir / resolved.combo.app
    return {p for folder in (base / "common", base / resolved.combo.env) if folder.is_dir()
            for p in folder.rglob("*") if p.is_file()}


def _line_of(path: Path, text: str) -> int | None:
    """The first line of `path` mentioning `text` (the entry a problem is about)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    return next((number for number, line in enumerate(lines, 1) if text in line), None)
