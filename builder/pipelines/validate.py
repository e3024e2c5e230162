"""`builder validate`: every combo in scope, every problem at once."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import scratch
from builder.batch import Ok, run_each
from builder.config.layers import ResolvedVars
from builder.config.layout import Layout
from builder.config.models import Combo
from builder.errors import BuilderError, ConfigError, Problem, ValidationFailed, shown_path
from builder.interrupts import Cancel
from builder.output import silent
from builder.pipelines import playbook_checks
from builder.pipelines.promote import cross_partition_copy
from builder.project import Project
from builder.provision import ansible_cfg, vault
from builder.provision.ansible import planned_settings
from builder.provision.ansible_cfg import Override
from builder.provision.steps import (
    POST_SHELL_VAR,
    PRE_SHELL_VAR,
    comp_playbook,
    shell_steps,
    strategy,
)
from builder.provision.vault import VaultPassword
from builder.render.template import Rendered, write

_AnsibleSettings = tuple[Path | None, tuple[Override, ...]]


@dataclass(frozen=True)
class ComboReport:
    """The problems found for one combo (none: it is fine)."""

    app: str
    env: str
    comp: str | None
    problems: tuple[Problem, ...]
    # The ansible.cfg a bake would use (None: Ansible's defaults) and builder's settings
    # on top of it, when the combo got that far.
    ansible_config: Path | None = None
    ansible_overrides: tuple[Override, ...] = ()
    notes: tuple[str, ...] = ()  # not problems: what went unchecked, and why
    vault_password_from: str | None = None  # where the syntax check's password came from

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class ValidateReport:
    """Every combo checked by `validate`."""

    root: Path
    results: tuple[ComboReport, ...]
    verbose: bool = False  # the text lists builder's Ansible settings

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
                 "errors": [_problem_json(p, self.root) for p in r.problems],
                 "notes": list(r.notes),
                 "vault_password_from": r.vault_password_from,
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
            lines.extend(f"     note: {note}" for note in r.notes)
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
             verbose: bool = False, vault_password_file: Path | None = None) -> ValidateReport:
    """Every problem of every combo in scope. The syntax check opens vault files with
    the password `bake` would use (the file, BUILDER_VAULT_PASSWORD_FILE, or online the
    SSM parameter); without one it stands them in and says which went unchecked."""
    reports: list[ComboReport] = []
    checks: dict[Combo, tuple[int, _Check]] = {}  # what Packer and Ansible check
    given = vault.from_file(vault_password_file)
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
        problems, rendered, settings, encrypted = _check_offline(project, item)
        reports.append(ComboReport(item.app, item.env, item.comp, tuple(problems), *settings))
        if rendered is not None and not offline:
            password = (given or _ssm_password(project, rendered.resolved)
                        or vault.from_config(ansible_cfg.find(
                            project.layout, rendered.resolved.playbook_path
                        ).vault_password_file()))
            check = _Check(rendered, password, encrypted)
            checks[item] = (len(reports) - 1, check)
            reports[-1] = dataclasses.replace(
                reports[-1], notes=check.notes(project.layout),
                vault_password_from=password.source if password and password.opens else None)
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
    return ValidateReport(project.root, tuple(reports), verbose)


def _env_of(problem: Problem, project: Project) -> tuple[str, str]:
    """The (app, env) a vars file belongs to, for problems found before any combo."""
    if problem.file is not None and problem.file.is_relative_to(project.layout.vars_dir):
        parts = problem.file.relative_to(project.layout.vars_dir).parts
        if len(parts) >= 2:
            return parts[0], parts[1]
        if parts:  # a folder under vars/ that is no app
            return parts[0], ""
    return "", ""


@dataclass(frozen=True)
class _Check:
    """One combo's external checks: what was rendered, the vault password found (None:
    no source had one), and the vault files its play reaches."""

    rendered: Rendered
    password: VaultPassword | None
    encrypted: tuple[Path, ...]

    @property
    def stand_ins(self) -> tuple[Path, ...]:
        """Vault files the syntax check can't open: stood in by empty mappings."""
        return () if self.password is not None and self.password.opens else self.encrypted

    def notes(self, layout: Layout) -> tuple[str, ...]:
        notes = [self.password.note] if self.password and self.password.note else []
        if self.stand_ins:
            files = ", ".join(layout.relative(p) for p in self.stand_ins)
            notes.append(f"vault files not checked (no vault password): {files}; to check "
                         f"them give {vault.HOW_TO_GIVE}")
        return tuple(notes)


def _ssm_password(project: Project, resolved: ResolvedVars) -> VaultPassword | None:
    parameter = resolved.settings.vault_password_ssm_parameter
    if not parameter:
        return None

    def read(name: str) -> str:
        from builder.aws import translate

        with translate(f"reading SSM parameter {name}"):
            reply = project.env_aws(resolved).client("ssm").get_parameter(
                Name=name, WithDecryption=True)
        return str(reply["Parameter"]["Value"])

    return vault.from_ssm(parameter, read)


def _check_offline(project: Project, combo: Combo
                   ) -> tuple[list[Problem], Rendered | None, _AnsibleSettings, tuple[Path, ...]]:
    none: _AnsibleSettings = (None, ())
    try:
        # Plaintext vault files come with the play's other problems (playbook_checks).
        resolved = project.resolve(combo.app, combo.env, combo.comp, check_vault_files=False)
    except ValidationFailed as exc:
        return list(exc.problems), None, none, ()
    except BuilderError as exc:
        return [exc.problem], None, none, ()
    problems: list[Problem] = []
    across = _promotes_across_partitions(project, resolved)
    if across:
        problems.append(resolved.problem("promote_from", across).problem)
    found_in_playbook: tuple[Problem, ...] = ()  # these leave the external checks to run
    settings = none
    encrypted: tuple[Path, ...] = ()
    try:
        playbook = comp_playbook(project.layout, resolved)
        config, overrides = planned_settings(project.layout, playbook, strategy(resolved))
        settings = (config.path, tuple(overrides))
        findings = playbook_checks.check(project, resolved)
        found_in_playbook, encrypted = findings.problems, findings.encrypted
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
        return [*problems, *found_in_playbook, *exc.problems], None, settings, encrypted
    except BuilderError as exc:
        return [*problems, *found_in_playbook, exc.problem], None, settings, encrypted
    return ([*problems, *found_in_playbook], (rendered if not problems else None), settings,
            encrypted)


def _promotes_across_partitions(project: Project, resolved: ResolvedVars) -> str | None:
    """A promote_from env in another partition with no `promote_by: rebake`: promote
    would refuse it."""
    source_env, combo = resolved.settings.promote_from, resolved.combo
    if not source_env:
        return None
    try:
        source = project.resolve(combo.app, source_env, combo.comp, check_vault_files=False)
    except BuilderError:  # that env's own problems are reported with it
        return None
    return cross_partition_copy(source, resolved)


def _external_checks(layout: Layout, check: _Check) -> list[Problem]:
    from builder import packer
    from builder.provision import ansible

    problems: list[Problem] = []
    rendered = check.rendered
    resolved = rendered.resolved
    with tempfile.TemporaryDirectory(prefix=scratch.prefix("validate")) as tmp:
        files = write(rendered, Path(tmp))
        problems.extend(_relocate(p, files.template, rendered)
                        for p in _guard(lambda: packer.validate(files.template, files.var_file,
                                                      rendered.source.parent)))
    password = check.password.value if check.password else None
    problems.extend(_guard(lambda: ansible.syntax_check(
        layout, resolved.playbook_path, resolved.values, vault_password=password,
        stand_ins=check.stand_ins)))
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
