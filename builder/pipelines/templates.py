"""`builder template check [NAME]`: for each template the combos use, what builder will
change in it (in file order) and what it can't handle, each with the template's file:line.

Combos whose rendering gives the same text share one entry; a Jinja template that
renders differently per combo gets one entry per distinct text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import BuilderError, InputError, Problem, TemplateError, shown_path
from builder.project import Project
from builder.render.adapt import Adaptation, Note, contract_gaps
from builder.render.template import source_line


@dataclass(frozen=True)
class TemplateCheck:
    """One template (one distinct rendering of it): its combos, changes and refusals."""

    name: str
    source: Path
    combos: tuple[str, ...]
    follows_contract: bool  # calls back into builder itself: used unchanged
    changes: tuple[Problem, ...]
    refusals: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.refusals


@dataclass(frozen=True)
class CheckReport:
    """`builder template check`: every template checked."""

    root: Path
    templates: tuple[TemplateCheck, ...]

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.templates)

    @property
    def exit_code(self) -> int:
        """2 when a template can't be used, as for any other bad input."""
        return 0 if self.ok else TemplateError.exit_code

    def to_json(self) -> dict[str, Any]:
        def located(problem: Problem) -> dict[str, Any]:
            return {"file": str(shown_path(problem.file, self.root)) if problem.file else None,
                    "line": problem.line, "message": problem.message}

        return {"ok": self.ok, "templates": [
            {"name": t.name, "file": str(shown_path(t.source, self.root)),
             "combos": list(t.combos), "follows_contract": t.follows_contract, "ok": t.ok,
             "changes": [located(p) for p in t.changes],
             "cannot_handle": [located(p) for p in t.refusals]}
            for t in self.templates]}

    def to_text(self) -> str:
        lines: list[str] = []
        for t in self.templates:
            combos = ", ".join(t.combos[:3]) + (f" and {len(t.combos) - 3} more"
                                                if len(t.combos) > 3 else "")
            lines.append(f"{shown_path(t.source, self.root)} ({combos})")
            if t.follows_contract:
                lines.append("  follows builder's contract itself (calls back into builder): "
                             "used unchanged")
            if t.changes and not t.refusals:
                lines.append("  builder will change, in order:")
                lines.extend(f"    {p.format(self.root)}" for p in t.changes)
            if t.refusals:
                lines.append("  can't handle (bake and validate refuse it, exit 2):")
                lines.extend(f"    {p.format(self.root)}" for p in t.refusals)
            elif not t.follows_contract:
                lines.append("  ok: bakes with builder's provisioning, hygiene and checks "
                             "(`builder render` writes the adapted copy)")
        bad = sum(not t.ok for t in self.templates)
        count = f"{len(self.templates)} template{'s' if len(self.templates) != 1 else ''}"
        lines.append(f"{count}, {bad} that builder can't use" if bad else f"{count}, all usable")
        return "\n".join(lines)


def check(project: Project, name: str | None = None) -> CheckReport:
    """Every template the combos use (or only NAME), adapted as a bake would."""
    groups: dict[str, tuple[Path, str, Adaptation | None, list[str]]] = {}
    names: dict[str, str] = {}
    for combo in project.config.combos():
        if isinstance(combo, Problem):
            continue  # `builder validate` reports what is wrong with the vars
        try:
            resolved = project.resolve(combo.app, combo.env, combo.comp)
        except BuilderError:
            continue
        template = resolved.settings.packer_template
        if name is not None and template != name:
            continue
        source, hcl, adaptation = project.renderer.check(resolved)
        key = hashlib.sha256(f"{source}\0{hcl}".encode()).hexdigest()
        if key not in groups:
            groups[key] = (source, hcl, adaptation, [])
            names[key] = template
        groups[key][3].append(str(combo))
    if name is not None and not groups:
        raise InputError(f"no combo uses packer template {name!r} (packer_template)")
    checks = []
    for key, (source, hcl, adaptation, combos) in groups.items():
        def located(note: Note, source: Path = source, hcl: str = hcl) -> Problem:
            return Problem(note.text, source, source_line(note.line, hcl, source))

        if adaptation is None:
            gaps = contract_gaps(hcl)
            refusals = (Problem("calls back into builder but doesn't use " + ", ".join(
                f"var.{g}" for g in gaps), source),) if gaps else ()
            checks.append(TemplateCheck(names[key], source, tuple(combos), True, (), refusals))
            continue
        checks.append(TemplateCheck(
            names[key], source, tuple(combos), False,
            tuple(located(n) for n in adaptation.changes),
            tuple(located(n) for n in adaptation.refusals)))
    return CheckReport(project.root, tuple(sorted(checks, key=lambda c: (c.name, c.combos))))
