"""`builder validate`: every combo in scope, every problem at once."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.config.layout import Layout
from builder.config.models import Combo
from builder.errors import BuilderError, ConfigError, Problem, ValidationFailed, shown_path
from builder.project import Project
from builder.provision.ansible import planned_settings
from builder.provision.ansible_cfg import Override
from builder.provision.steps import comp_playbook, strategy
from builder.render.template import Rendered, source_line, write

_AnsibleSettings = tuple[Path | None, tuple[Override, ...]]


@dataclass(frozen=True)
class ComboReport:
    app: str
    env: str
    comp: str | None
    problems: tuple[Problem, ...]
    # The ansible.cfg a bake would use (None: Ansible's defaults) and builder's settings
    # on top of it, when the combo got that far.
    ansible_config: Path | None = None
    ansible_overrides: tuple[Override, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class ValidateReport:
    root: Path
    results: tuple[ComboReport, ...]
    verbose: bool = False  # the text lists builder's Ansible settings

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "results": [
                {"app": r.app, "env": r.env, "comp": r.comp, "ok": r.ok,
                 "errors": [_problem_json(p, self.root) for p in r.problems],
                 "ansible": {
                     "config": str(shown_path(r.ansible_config, self.root))
                     if r.ansible_config else None,
                     "overrides": [dataclasses.asdict(o) for o in r.ansible_overrides]}}
                for r in self.results
            ],
        }

    def to_text(self) -> str:
        lines = []
        for r in self.results:
            name = "/".join(part for part in (r.app, r.env, r.comp) if part)
            lines.append(f"{'ok  ' if r.ok else 'FAIL'} {name}")
            lines.extend(f"     {p.format(self.root)}" for p in r.problems)
        if self.verbose:
            lines += self._ansible_text()
        bad = sum(not r.ok for r in self.results)
        lines.append(f"{len(self.results)} combos, {bad} with problems"
                     if bad else f"{len(self.results)} combos, all valid")
        return "\n".join(lines)


    def _ansible_text(self) -> list[str]:
        """Once per distinct Ansible configuration: which combos use it, what builder sets."""
        groups: dict[tuple[Path | None, tuple[Override, ...]], list[str]] = {}
        for r in self.results:
            if r.ansible_overrides:
                name = "/".join(part for part in (r.app, r.env, r.comp) if part)
                groups.setdefault((r.ansible_config, r.ansible_overrides), []).append(name)
        lines = []
        for (config, overrides), names in groups.items():
            shown = shown_path(config, self.root) if config else "none (Ansible's defaults)"
            lines.append(f"ansible.cfg: {shown} — {', '.join(names)}; builder sets:")
            lines.extend(f"     {o.show()}" for o in overrides)
        return lines


def _problem_json(problem: Problem, root: Path) -> dict[str, Any]:
    return {"file": str(shown_path(problem.file, root)) if problem.file else None,
            "line": problem.line, "message": problem.message}


def validate(project: Project, app: str | None = None, env: str | None = None,
             comp: str | None = None, *, offline: bool = False, jobs: int = 2,
             verbose: bool = False) -> ValidateReport:
    reports: list[ComboReport] = []
    checks: list[tuple[int, Rendered]] = []
    try:
        scope = list(project.config.combos(app, env, comp))
    except BuilderError as exc:
        failed = ComboReport(app or "", env or "", comp, (exc.problem,))
        return ValidateReport(project.root, (failed,))
    for item in scope:
        if isinstance(item, Problem):
            where = _env_of(item, project)
            reports.append(ComboReport(where[0], where[1], None, (item,)))
            continue
        problems, rendered, settings = _check_offline(project, item)
        reports.append(ComboReport(item.app, item.env, item.comp, tuple(problems), *settings))
        if rendered is not None and not offline:
            checks.append((len(reports) - 1, rendered))
    if checks:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            found_all = pool.map(lambda check: _external_checks(project.layout, check[1]),
                                 checks)
            for (index, _), found in zip(checks, found_all, strict=True):
                reports[index] = dataclasses.replace(
                    reports[index], problems=reports[index].problems + tuple(found))
    if comp is not None and not any(r.comp == comp for r in reports) and app and env:
        reports.append(ComboReport(app, env, comp, (Problem(
            f"comp {comp!r} is not in the components of {app}/{env}"),)))
    return ValidateReport(project.root, tuple(reports), verbose)


def _env_of(problem: Problem, project: Project) -> tuple[str, str]:
    """The (app, env) a vars file belongs to, for problems found before any combo."""
    if problem.file is not None and problem.file.is_relative_to(project.layout.vars_dir):
        parts = problem.file.relative_to(project.layout.vars_dir).parts
        if len(parts) >= 2:
            return parts[0], parts[1]
    return "", ""


def _check_offline(project: Project, combo: Combo
                   ) -> tuple[list[Problem], Rendered | None, _AnsibleSettings]:
    none: _AnsibleSettings = (None, ())
    try:
        resolved = project.resolve(combo.app, combo.env, combo.comp)
    except ValidationFailed as exc:
        return list(exc.problems), None, none
    except BuilderError as exc:
        return [exc.problem], None, none
    problems: list[Problem] = []
    settings = none
    try:
        playbook = comp_playbook(project.layout, resolved)
        config, overrides = planned_settings(project.layout, playbook, strategy(resolved))
        settings = (config.path, tuple(overrides))
    except ConfigError as exc:
        problems.append(exc.problem)
    # Outside the try below: without Packer (its version decides the rendering) the
    # whole run stops with ToolMissing instead of one problem per combo.
    renderer = project.renderer
    try:
        rendered = renderer.render(resolved)
    except ValidationFailed as exc:
        return problems + list(exc.problems), None, settings
    except BuilderError as exc:
        return [*problems, exc.problem], None, settings
    return problems, (rendered if not problems else None), settings


def _external_checks(layout: Layout, rendered: Rendered) -> list[Problem]:
    from builder import packer
    from builder.provision import ansible

    problems: list[Problem] = []
    resolved = rendered.resolved
    with tempfile.TemporaryDirectory(prefix="builder-validate-") as tmp:
        files = write(rendered, Path(tmp))
        problems.extend(_relocate(p, files.template, rendered)
                        for p in _guard(lambda: packer.validate(files.template, files.var_file)))
    problems.extend(_guard(lambda: ansible.syntax_check(
        layout, resolved.playbook_path, resolved.values)))
    return problems


def _guard(check: Callable[[], list[Problem]]) -> list[Problem]:
    try:
        return check()
    except BuilderError as exc:
        return [exc.problem]


def _relocate(problem: Problem, rendered_file: Path, rendered: Rendered) -> Problem:
    """Packer names the rendered copy in a temp dir; point at the user's template."""
    if problem.file is not None and problem.file.name == rendered_file.name:
        line = source_line(problem.line, rendered.hcl, rendered.source)
        return Problem(problem.message, rendered.source, line)
    return problem
