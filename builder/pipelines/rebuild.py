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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from builder.bake.build import BakeOptions, bake
from builder.config.layers import ResolvedVars
from builder.config.models import Combo
from builder.errors import BuilderError, Interrupted
from builder.interrupts import Cancel
from builder.output import Progress, ProgressFn, table
from builder.pipelines import inventory
from builder.pipelines.due import BAKE, PROMOTE, SKIP, Due, decide
from builder.project import Project

ERROR = "error"  # the combo's config or AWS view failed: neither planned nor run
_DEFAULT_JOBS = 4  # bakes (or promotions) at once without -j

RESULT_PLANNED, RESULT_DONE, RESULT_FAILED, RESULT_SKIPPED = (
    "planned", "done", "failed", "skipped")


@dataclass(frozen=True)
class PlanEntry:
    combo: Combo
    action: str  # bake, promote, skip, error
    reasons: tuple[str, ...]
    command: str | None  # what one CI job runs for it
    force: bool = False
    promote_from: str | None = None

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def to_json(self) -> dict[str, Any]:
        return {"app": self.combo.app, "env": self.combo.env, "comp": self.combo.comp,
                "action": self.action, "reason": self.reason, "command": self.command}


@dataclass(frozen=True)
class Outcome:
    entry: PlanEntry
    result: str  # planned, done, failed, skipped
    ami_id: str = ""
    detail: str = ""

    def to_json(self, *, dry_run: bool) -> dict[str, Any]:
        document = self.entry.to_json()
        if not dry_run:
            document.update(result=self.result, ami_id=self.ami_id or None,
                            detail=self.detail or None)
        return document


@dataclass(frozen=True)
class RebuildReport:
    outcomes: tuple[Outcome, ...]
    dry_run: bool
    release: bool
    duration_s: float

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes
                if o.result == RESULT_FAILED or o.entry.action == ERROR]

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
        return f"{body}\n\n{self.summary()}"

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            key = outcome.entry.action if self.dry_run or outcome.entry.action in (
                SKIP, ERROR) else f"{outcome.entry.action} {outcome.result}"
            counts[key] = counts.get(key, 0) + 1
        parts = ", ".join(f"{n} {key}" for key, n in sorted(counts.items()))
        verb = "planned" if self.dry_run else "rebuild"
        return f"{verb}: {parts or 'nothing in scope'} ({self.duration_s:.1f}s)"


def plan(project: Project, app: str | None = None, env: str | None = None, *,
         release: bool = False) -> list[PlanEntry]:
    """What a rebuild would do, combo by combo, and why."""
    covered = inventory.scope(project, app, env)
    facts = inventory.gather(project, covered.resolved)
    now = datetime.now(UTC)
    entries: list[PlanEntry] = []
    for resolved in covered.resolved:
        combo = resolved.combo
        problem = facts.problems.get(combo)
        if problem is not None:
            entries.append(PlanEntry(combo, ERROR, (problem,), None))
            continue
        try:
            due = decide(project, facts, facts.facts[combo], now)
        except BuilderError as exc:
            entries.append(PlanEntry(combo, ERROR, (exc.format(project.root),), None))
            continue
        entries.append(_entry(resolved, due, release))
    return sorted(entries, key=lambda e: e.combo)


def _entry(resolved: ResolvedVars, due: Due, release: bool) -> PlanEntry:
    combo = resolved.combo
    command: list[str] | None = None
    if due.action == BAKE:
        command = ["builder", "bake", combo.app, combo.env, combo.comp]
        command += ["--force"] if due.force else []
        command += ["--release"] if release else []
    elif due.action == PROMOTE:
        command = ["builder", "promote", combo.app, combo.comp, "--to", combo.env]
        command += [] if release else ["--no-deploy"]
    return PlanEntry(combo, due.action, due.reasons, shlex.join(command) if command else None,
                     due.force, resolved.settings.promote_from)


def rebuild(project: Project, app: str | None = None, env: str | None = None, *,
            release: bool = False, dry_run: bool = False, jobs: int | None = None,
            progress: ProgressFn | None = None, cancel: Cancel | None = None) -> RebuildReport:
    started = time.monotonic()
    report = progress or Progress()
    cancel = cancel or Cancel()
    report("rebuild", "planning: base images, AMIs and fingerprints")
    entries = plan(project, app, env, release=release)
    if dry_run:
        return RebuildReport(tuple(Outcome(e, RESULT_PLANNED if e.action in (BAKE, PROMOTE)
                                           else RESULT_SKIPPED) for e in entries),
                             True, release, time.monotonic() - started)
    runner = _Runner(project, release, report, cancel)
    outcomes = {e.combo: Outcome(e, RESULT_SKIPPED) for e in entries}
    bakes = [e for e in entries if e.action == BAKE]
    if bakes:
        project.renderer  # noqa: B018 - no Packer: one error up front, not one per bake
    workers = max(1, jobs or _DEFAULT_JOBS)
    for wave in [bakes, *_promotion_waves(entries)]:
        if not wave:
            continue
        with ThreadPoolExecutor(max_workers=min(workers, len(wave)),
                                thread_name_prefix="rebuild") as pool:
            for outcome in pool.map(runner.run, wave):
                outcomes[outcome.entry.combo] = outcome
        cancel.raise_if_set()
    return RebuildReport(tuple(outcomes[e.combo] for e in entries), False, release,
                         time.monotonic() - started)


def _promotion_waves(entries: Sequence[PlanEntry]) -> list[list[PlanEntry]]:
    """Promotions grouped so each runs after the promotions of the env it takes from."""
    planned = {e.combo: e for e in entries if e.action == PROMOTE}

    def depth(entry: PlanEntry) -> int:
        source = Combo(entry.combo.app, entry.promote_from or "", entry.combo.comp)
        upstream = planned.get(source)
        return 1 + (depth(upstream) if upstream is not None else 0)

    waves: dict[int, list[PlanEntry]] = {}
    for entry in planned.values():
        waves.setdefault(depth(entry), []).append(entry)
    return [waves[level] for level in sorted(waves)]


class _Runner:
    def __init__(self, project: Project, release: bool, progress: ProgressFn, cancel: Cancel):
        self.project = project
        self.release = release
        self.progress = progress
        self.cancel = cancel

    def run(self, entry: PlanEntry) -> Outcome:
        work: Callable[[PlanEntry], Outcome] = (
            self._bake if entry.action == BAKE else self._promote)
        try:
            return work(entry)
        except Interrupted:
            raise
        except BuilderError as exc:
            self.progress(str(entry.combo), f"{entry.action} FAILED: {exc.message}")
            return Outcome(entry, RESULT_FAILED, detail=exc.message)

    def _bake(self, entry: PlanEntry) -> Outcome:
        combo = entry.combo
        baked = bake(self.project, combo, options=BakeOptions(force=entry.force),
                     progress=self.progress, cancel=self.cancel)
        detail = "unchanged" if baked.skipped else "baked"
        if self.release:
            from builder.release.release import release

            released = release(self.project, combo, ami_id=baked.ami_id,
                               progress=self.progress, cancel=self.cancel)
            detail += f", release {released.outcome}"
        return Outcome(entry, RESULT_DONE, baked.ami_id, detail)

    def _promote(self, entry: PlanEntry) -> Outcome:
        from builder.pipelines.promote import promote

        combo = entry.combo
        promoted = promote(self.project, combo.app, combo.comp, combo.env, deploy=self.release,
                           progress=self.progress, cancel=self.cancel)
        detail = (f"{'reused' if promoted.reused else 'copied'} {promoted.source_env}/"
                  f"{promoted.source_ami}")
        if promoted.released is not None:
            detail += f", release {promoted.released.outcome}"
        return Outcome(entry, RESULT_DONE, promoted.ami_id, detail)
