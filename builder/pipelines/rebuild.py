"""`builder rebuild`: bake what is stale, promote what its source env has verified, skip
the rest; or, with --dry-run, the plan as a list a CI system fans out (one job per
entry, each running the entry's `command`).

The plan comes from one Inventory (a fixed number of AWS queries per account and
region) and fingerprints computed locally. Bakes run in parallel, each released when
asked; promotions run after their source env's bakes, an env promoting from an env
that promotes itself after that one. A failure doesn't stop the others.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from builder import records
from builder.aws import images as amis
from builder.aws.calls import runs
from builder.bake.build import BakeOptions, bake
from builder.batch import Ok, run_each
from builder.config.layers import ResolvedVars
from builder.config.models import Combo, PromoteBy
from builder.errors import BuilderError, DeployFailed
from builder.interrupts import Cancel
from builder.output import ProgressFn, silent, table
from builder.pipelines import inventory
from builder.pipelines.due import Action, Due, decide
from builder.project import Project


class Result(StrEnum):
    """What became of a plan entry (`result` in the report)."""

    PLANNED = "planned"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class PlanEntry:
    """One combo of the rebuild plan: the action, the reasons and the CI command."""

    combo: Combo
    action: Action
    reasons: tuple[str, ...]
    command: str | None  # what one CI job runs for it
    force: bool = False
    promote_from: str | None = None
    running_id: str = ""  # what the launch template launches
    changes: records.Changes | None = None  # vs running_id, as far as the plan knows

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def to_json(self) -> dict[str, Any]:
        """A CI matrix entry (the plan's changes are in the text only: not a job's)."""
        return {"app": self.combo.app, "env": self.combo.env, "comp": self.combo.comp,
                "action": self.action, "reason": self.reason, "command": self.command}


@dataclass(frozen=True)
class Outcome:
    """What became of one plan entry."""

    entry: PlanEntry
    result: Result
    ami_id: str = ""
    detail: str = ""
    changes: records.Changes | None = None  # vs what ran, once baked or promoted

    def shown_changes(self) -> records.Changes | None:
        """What the run found, else what the plan knew."""
        return self.changes or self.entry.changes

    def to_json(self, *, dry_run: bool) -> dict[str, Any]:
        document = self.entry.to_json()
        if not dry_run:
            shown = self.shown_changes()
            document.update(result=self.result, ami_id=self.ami_id or None,
                            detail=self.detail or None,
                            changes=shown.to_json() if shown else None)
        return document


@dataclass(frozen=True)
class RebuildReport:
    """Every outcome of a rebuild (or the plan, with dry_run)."""

    outcomes: tuple[Outcome, ...]
    dry_run: bool
    release: bool
    duration_s: float

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes
                if o.result == Result.FAILED or o.entry.action == Action.ERROR]

    @property
    def exit_code(self) -> int:
        """1 when anything failed or could not be planned (the rest was done)."""
        return 1 if self.failed else 0

    def to_json(self) -> list[dict[str, Any]]:
        """A list, so `rebuild --dry-run --json` is a CI matrix as it stands."""
        return [o.to_json(dry_run=self.dry_run) for o in self.outcomes]

    def to_text(self) -> str:
        if self.dry_run:
            body = table(("combo", "action", "reason", "command"), [
                (str(o.entry.combo), o.entry.action, o.entry.reason, o.entry.command or "-")
                for o in self.outcomes])
        else:
            body = table(("combo", "action", "result", "AMI", "detail"), [
                (str(o.entry.combo), o.entry.action, o.result, o.ami_id or "-",
                 o.detail or o.entry.reason) for o in self.outcomes])
        changes = [f"{o.entry.combo}: {line}" if n == 0 else line
                   for o in self.outcomes if (shown := o.shown_changes()) is not None
                   for n, line in enumerate(shown.lines())]
        return "\n\n".join(filter(None, [body, "\n".join(changes), self.summary()]))

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            key = outcome.entry.action if self.dry_run or outcome.entry.action in (
                Action.SKIP, Action.ERROR) else f"{outcome.entry.action} {outcome.result}"
            counts[key] = counts.get(key, 0) + 1
        parts = ", ".join(f"{n} {key}" for key, n in sorted(counts.items()))
        verb = "planned" if self.dry_run else "rebuild"
        return f"{verb}: {parts or 'nothing in scope'} ({self.duration_s:.1f}s)"


@runs("rebuild")
def plan(project: Project, app: str | None = None, env: str | None = None, *,
         release: bool = False) -> list[PlanEntry]:
    """What a rebuild would do, combo by combo, and why."""
    covered = inventory.scope(project, app, env)
    facts = inventory.gather(project, covered.resolved)
    now = datetime.now(UTC)
    entries = [PlanEntry(combo, Action.ERROR, (problem,), None)
               for combo, problem in covered.problems.items()]
    for resolved in covered.resolved:
        combo = resolved.combo
        problem = facts.problems.get(combo)
        if problem is not None:
            entries.append(PlanEntry(combo, Action.ERROR, (problem,), None))
            continue
        try:
            due = decide(project, facts, facts.facts[combo], now)
            changes = _planned_changes(project, facts, facts.facts[combo], due)
        except BuilderError as exc:
            entries.append(PlanEntry(combo, Action.ERROR, (exc.format(project.root),), None))
            continue
        entries.append(_entry(resolved, due, release, facts.facts[combo].running_id, changes))
    return sorted(entries, key=lambda e: e.combo)


def _planned_changes(project: Project, facts: inventory.Inventory,
                     combo_facts: inventory.ComboFacts, due: Due) -> records.Changes | None:
    """Before the run: a bake's base image change (packages come with the bake); a
    promotion's whole change (the source's AMI exists)."""
    env_aws = project.env_aws(combo_facts.resolved)
    if due.action == Action.BAKE:
        return records.planned(env_aws, combo_facts.running, combo_facts.newest_base.id,
                               combo_facts.bases)
    source = inventory.promote_source(combo_facts.combo, combo_facts.settings)
    if due.action != Action.PROMOTE or source is None or source not in facts.facts:
        return None
    candidate = facts.facts[source].running
    return records.changes(project, env_aws, combo_facts.running, candidate) \
        if candidate is not None else None


def _entry(resolved: ResolvedVars, due: Due, release: bool, running_id: str = "",
           changes: records.Changes | None = None) -> PlanEntry:
    combo = resolved.combo
    command: list[str] | None = None
    if due.action == Action.BAKE:
        command = ["builder", "bake", combo.app, combo.env, combo.comp]
        command += ["--force"] if due.force else []
        command += ["--release"] if release else []
    elif due.action == Action.PROMOTE:
        command = ["builder", "promote", combo.app, combo.comp, "--to", combo.env]
        command += [] if release else ["--no-deploy"]
    return PlanEntry(combo, due.action, due.reasons, shlex.join(command) if command else None,
                     due.force, resolved.settings.promote_from, running_id, changes)


@runs("rebuild")
def rebuild(project: Project, app: str | None = None, env: str | None = None, *,
            release: bool = False, dry_run: bool = False, jobs: int | None = None,
            progress: ProgressFn = silent, cancel: Cancel | None = None) -> RebuildReport:
    """Bake what is stale and promote what is due, in scope; failures become outcomes."""
    started = time.monotonic()
    cancel = cancel or Cancel()
    progress("rebuild", "planning: base images, AMIs and fingerprints")
    entries = plan(project, app, env, release=release)
    if dry_run:
        return RebuildReport(tuple(Outcome(e, Result.PLANNED if e.action in (
            Action.BAKE, Action.PROMOTE) else Result.SKIPPED) for e in entries),
                             True, release, time.monotonic() - started)
    runner = _Runner(project, {e.combo: e for e in entries}, release, progress, cancel)
    outcomes = {e.combo: Outcome(e, Result.SKIPPED) for e in entries}
    bakes = [e for e in entries if e.action == Action.BAKE]
    if bakes:
        project.renderer  # noqa: B018 - no Packer: one error up front, not one per bake
    for wave in filter(None, [bakes, *_promotion_waves(entries)]):
        for done in run_each([e.combo for e in wave], runner.run, jobs=jobs, cancel=cancel,
                             progress=progress, what=wave[0].action):
            outcomes[done.combo] = done.value if isinstance(done, Ok) else Outcome(
                outcomes[done.combo].entry, Result.FAILED, detail=done.error.message)
    return RebuildReport(tuple(outcomes[e.combo] for e in entries), False, release,
                         time.monotonic() - started)


def _promotion_waves(entries: Sequence[PlanEntry]) -> list[list[PlanEntry]]:
    """Promotions grouped so each runs after the promotions of the env it takes from."""
    planned = {e.combo: e for e in entries if e.action == Action.PROMOTE}

    def depth(entry: PlanEntry) -> int:
        source = Combo(entry.combo.app, entry.promote_from or "", entry.combo.comp)
        upstream = planned.get(source)
        return 1 + (depth(upstream) if upstream is not None else 0)

    waves: dict[int, list[PlanEntry]] = {}
    for entry in planned.values():
        waves.setdefault(depth(entry), []).append(entry)
    return [waves[level] for level in sorted(waves)]


class _Runner:
    """Runs one plan entry: its bake (and release), or its promotion."""

    def __init__(self, project: Project, entries: dict[Combo, PlanEntry], release: bool,
                 progress: ProgressFn, cancel: Cancel):
        self.project = project
        self.entries = entries
        self.release = release
        self.progress = progress
        self.cancel = cancel

    def run(self, combo: Combo) -> Outcome:
        entry = self.entries[combo]
        return self._bake(entry) if entry.action == Action.BAKE else self._promote(entry)

    def _bake(self, entry: PlanEntry) -> Outcome:
        combo = entry.combo
        baked = bake(self.project, combo, options=BakeOptions(force=entry.force),
                     progress=self.progress, cancel=self.cancel)
        detail = "unchanged" if baked.skipped else "baked"
        changes = self._changes(entry, baked.ami_id)
        if self.release:
            from builder.release.regions import release

            released = release(self.project, combo, ami_id=baked.ami_id,
                               progress=self.progress, cancel=self.cancel)
            if released.exit_code:  # some regions failed (and rolled back), others stay
                raise DeployFailed(f"{combo}: release {released.to_text()}")
            detail += f", release {released.outcome}"
        return Outcome(entry, Result.DONE, baked.ami_id, detail, changes)

    def _promote(self, entry: PlanEntry) -> Outcome:
        from builder.pipelines.promote import promote

        combo = entry.combo
        promoted = promote(self.project, combo.app, combo.comp, combo.env, deploy=self.release,
                           progress=self.progress, cancel=self.cancel)
        done = "rebaked" if promoted.promote_by == PromoteBy.REBAKE else "copied"
        detail = (f"{'reused' if promoted.reused else done} {promoted.source_env}/"
                  f"{promoted.source_ami}")
        if promoted.released is not None:
            if promoted.released.exit_code:
                raise DeployFailed(f"{combo}: release {promoted.released.to_text()}")
            detail += f", release {promoted.released.outcome}"
        return Outcome(entry, Result.DONE, promoted.ami_id, detail,
                       self._changes(entry, promoted.ami_id))

    def _changes(self, entry: PlanEntry, ami_id: str) -> records.Changes | None:
        """The new AMI against what the launch template launched when the plan was made."""
        resolved = self.project.resolve(entry.combo.app, entry.combo.env, entry.combo.comp)
        env_aws = self.project.env_aws(resolved)
        try:
            new = amis.images_by_id(env_aws.client("ec2"), [ami_id]).get(ami_id)
            return records.against_running(self.project, env_aws, entry.running_id, new) \
                if new is not None else None
        except BuilderError as exc:  # the bake or promotion is done: not its failure
            self.progress(str(entry.combo), f"changes vs what runs unknown: {exc.message}")
            return None
