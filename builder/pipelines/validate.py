"""`builder validate`: every combo in scope, every problem at once."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.batch import Ok, run_each
from builder.config.layout import Layout
from builder.config.models import Combo
from builder.errors import BuilderError, ConfigError, Problem, ValidationFailed, shown_path
from builder.interrupts import Cancel
from builder.output import silent
from builder.project import Project
from builder.provision.steps import POST_SHELL_VAR, PRE_SHELL_VAR, comp_playbook, shell_steps
from builder.render.template import Rendered, write


@dataclass(frozen=True)
class ComboReport:
    """The problems found for one combo (none: it is fine)."""

    app: str
    env: str
    comp: str | None
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class ValidateReport:
    """Every combo checked by `validate`."""

    root: Path
    results: tuple[ComboReport, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def exit_code(self) -> int:
        """2 when any problem was found, as for any other bad input."""
        return 0 if self.ok else ValidationFailed.exit_code

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "results": [
                {"app": r.app, "env": r.env, "comp": r.comp, "ok": r.ok,
                 "errors": [_problem_json(p, self.root) for p in r.problems]}
                for r in self.results
            ],
        }

    def to_text(self) -> str:
        lines = []
        for r in self.results:
            name = "/".join(part for part in (r.app, r.env, r.comp) if part)
            lines.append(f"{'ok  ' if r.ok else 'FAIL'} {name}")
            lines.extend(f"     {p.format(self.root)}" for p in r.problems)
        bad = sum(not r.ok for r in self.results)
        lines.append(f"{len(self.results)} combos, {bad} with problems"
                     if bad else f"{len(self.results)} combos, all valid")
        return "\n".join(lines)


def _problem_json(problem: Problem, root: Path) -> dict[str, Any]:
    return {"file": str(shown_path(problem.file, root)) if problem.file else None,
            "line": problem.line, "message": problem.message}


def validate(project: Project, app: str | None = None, env: str | None = None,
             comp: str | None = None, *, offline: bool = False, jobs: int = 2) -> ValidateReport:
    """Check config, render and HCL, and unless offline Packer and Ansible, for every
    combo in scope."""
    reports: list[ComboReport] = []
    checks: dict[Combo, tuple[int, Rendered]] = {}  # what Packer and Ansible check, per combo
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
        problems, rendered = _check_offline(project, item)
        reports.append(ComboReport(item.app, item.env, item.comp, tuple(problems)))
        if rendered is not None and not offline:
            checks[item] = (len(reports) - 1, rendered)
    for done in run_each(list(checks), lambda combo: _external_checks(project.layout,
                                                                      checks[combo][1]),
                         jobs=max(1, jobs), cancel=Cancel(), progress=silent, what="validate"):
        found = done.value if isinstance(done, Ok) else [done.error.problem]
        index = checks[done.combo][0]
        reports[index] = dataclasses.replace(
            reports[index], problems=reports[index].problems + tuple(found))
    if comp is not None and not any(r.comp == comp for r in reports) and app and env:
        reports.append(ComboReport(app, env, comp, (Problem(
            f"comp {comp!r} is not in the components of {app}/{env}"),)))
    return ValidateReport(project.root, tuple(reports))


def _env_of(problem: Problem, project: Project) -> tuple[str, str]:
    """The (app, env) a vars file belongs to, for problems found before any combo."""
    if problem.file is not None and problem.file.is_relative_to(project.layout.vars_dir):
        parts = problem.file.relative_to(project.layout.vars_dir).parts
        if len(parts) >= 2:
            return parts[0], parts[1]
    return "", ""


def _check_offline(project: Project, combo: Combo) -> tuple[list[Problem], Rendered | None]:
    try:
        resolved = project.resolve(combo.app, combo.env, combo.comp)
    except ValidationFailed as exc:
        return list(exc.problems), None
    except BuilderError as exc:
        return [exc.problem], None
    problems: list[Problem] = []
    try:
        comp_playbook(project.layout, resolved)
    except ConfigError as exc:
        problems.append(exc.problem)
    for key in (PRE_SHELL_VAR, POST_SHELL_VAR):
        try:
            shell_steps(resolved, key)
        except ConfigError as exc:
            problems.append(exc.problem)
    # Outside the try below: without Packer (its version decides the rendering) the
    # whole run stops with ToolMissing instead of one problem per combo.
    renderer = project.renderer
    try:
        rendered = renderer.render(resolved)
    except ValidationFailed as exc:
        return problems + list(exc.problems), None
    except BuilderError as exc:
        return [*problems, exc.problem], None
    return problems, (rendered if not problems else None)


def _external_checks(layout: Layout, rendered: Rendered) -> list[Problem]:
    from builder import packer
    from builder.provision import ansible

    problems: list[Problem] = []
    resolved = rendered.resolved
    with tempfile.TemporaryDirectory(prefix="builder-validate-") as tmp:
        files = write(rendered, Path(tmp))
        problems.extend(_relocate(p, files.template, rendered)
                        for p in _guard(lambda: packer.validate(files.template, files.var_file,
                                                      rendered.source.parent)))
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
        return Problem(problem.message, rendered.source, rendered.template_line(problem.line))
    return problem
