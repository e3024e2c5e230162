"""`builder status`: per (app, env, comp) the AMI its launch template launches, how old
it is and how it got there, its base image and whether a newer one is out, whether a
rebuild (or promotion) is due and why, and the group's last deployment.

Batched like `rebuild` (one Inventory), plus one CodeDeploy query per application in
each account and region for the last deployments. A multi-region env has a row per
region, with what is due judged in its bake region.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from builder.aws import AwsTarget, codedeploy
from builder.aws import images as amis
from builder.aws.calls import runs
from builder.bake.packages import MANIFEST
from builder.config.layers import ResolvedVars
from builder.config.models import Combo
from builder.errors import AwsError, BuilderError
from builder.output import table
from builder.pipelines import inventory
from builder.pipelines.due import Action, Due, decide
from builder.pipelines.inventory import ComboFacts
from builder.project import Project
from builder.records import build_folder
from builder.render.template import load_parser

_EPOCH = datetime.fromtimestamp(0, UTC)


@dataclass(frozen=True)
class LastDeployment:
    """A deployment group's latest deployment."""

    id: str
    status: str
    time: str  # when it ended (or was created, while running)


@dataclass(frozen=True)
class ComboStatus:
    """What one combo runs, how old it is, and what is due."""

    combo: Combo
    account: str
    region: str
    ami_id: str = ""  # on the launch template's default version
    ami_name: str = ""
    built_at: datetime | None = None
    status: str = ""  # its builder:status tag
    base_ami: str = ""  # what it was baked from
    base_name: str = ""
    newer_base: str = ""  # a newer release of that base image, when there is one
    due: Due | None = None
    deployment: LastDeployment | None = None
    promoted_from: str = ""
    # The newest usable AMI of the comp, when it isn't the one running (not released yet).
    unreleased: str = ""
    error: str = ""
    region_shown: bool = False  # one of several regions of its env: named in the text
    # For the lineage page (not in the text or JSON): the running AMI's package count
    # when its bake's packages.json is here and matches its tag, and the promoted copies
    # of it in other envs (combo, copy's id).
    packages: int | None = None
    copies: tuple[tuple[Combo, str], ...] = ()

    @property
    def rebuild_due(self) -> bool:
        return self.due is not None and self.due.action in (Action.BAKE, Action.PROMOTE)

    def age_days(self, now: datetime) -> float | None:
        return (now - self.built_at).total_seconds() / 86400 if self.built_at else None

    def to_json(self, now: datetime) -> dict[str, Any]:
        age = self.age_days(now)
        return {
            "app": self.combo.app, "env": self.combo.env, "comp": self.combo.comp,
            "account": self.account, "region": self.region,
            "ami_id": self.ami_id or None, "ami_name": self.ami_name or None,
            "built_at": self.built_at.isoformat() if self.built_at else None,
            "age_days": round(age, 1) if age is not None else None,
            "status": self.status or None,
            "base_ami": self.base_ami or None, "base_ami_name": self.base_name or None,
            "newer_base_ami": self.newer_base or None,
            "due": self.due.action if self.due else None,
            "rebuild_due": self.rebuild_due,
            "reasons": list(self.due.reasons) if self.due else [],
            "last_deployment": ({"id": self.deployment.id, "status": self.deployment.status,
                                 "time": self.deployment.time} if self.deployment else None),
            "promoted_from": self.promoted_from or None,
            "unreleased_ami": self.unreleased or None,
            "error": self.error or None,
        }

    def row(self, now: datetime) -> tuple[str, ...]:
        age = self.age_days(now)
        name = f"{self.combo} {self.region}" if self.region_shown else str(self.combo)
        if self.error:
            return (name, "-", "-", "-", "-", f"error: {self.error}", "-", "-")
        base = self.base_ami or "-"
        if self.newer_base:
            base += f" (newer: {self.newer_base})"
        if self.due is None or not self.rebuild_due:
            due = "no"
        else:
            verb = "rebuild due" if self.due.action == Action.BAKE else "promotion due"
            due = f"{verb}: {self.due.reason}"
        deployment = (f"{self.deployment.status} {self.deployment.id} {self.deployment.time}"
                      if self.deployment else "-")
        ami = self.ami_id or "-"
        if self.unreleased:
            ami += f" (not released: {self.unreleased})"
        return (name, ami, age_text(age), self.status or "-", base, due, deployment,
                self.promoted_from or "-")


@dataclass(frozen=True)
class StatusReport:
    """The status of every combo in scope, at one time."""

    combos: tuple[ComboStatus, ...]
    at: datetime

    exit_code = 0

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(timespec="seconds"),
                "combos": [c.to_json(self.at) for c in self.combos]}

    def to_text(self) -> str:
        if not self.combos:
            return "nothing in scope"
        due = sum(1 for c in self.combos if c.rebuild_due)
        errors = sum(1 for c in self.combos if c.error)
        return (table(("combo", "AMI", "age", "status", "base image", "due",
                       "last deployment", "promoted from"),
                      [c.row(self.at) for c in self.combos])
                + f"\n\n{len(self.combos)} combos, {due} due"
                + (f", {errors} with errors" if errors else ""))


@runs("status")
def status(project: Project, app: str | None = None, env: str | None = None) -> StatusReport:
    """What each combo in scope runs and whether a rebuild or promotion is due."""
    now = datetime.now(UTC)
    covered = inventory.scope(project, app, env)
    package_counts: dict[str, int] = {}
    rows = [ComboStatus(combo, "", "", error=problem)
            for combo, problem in covered.problems.items()]
    # A multi-region env has a row per region: the inventory (keyed by combo) is taken
    # once for the bake regions, once for the second regions, and so on. What is due is
    # the bake region's in every region: a bake there (its base image named by the bake
    # region's id) makes every region's AMI.
    baked = _rows(project, list(covered.resolved), now, package_counts)
    judged = {row.combo: row for row in baked}
    rows += baked
    deepest = max((len(r.settings.aws_regions) for r in covered.resolved), default=1)
    for depth in range(1, deepest):
        in_scope = [r.in_region(r.settings.aws_regions[depth]) for r in covered.resolved
                    if depth < len(r.settings.aws_regions)]
        rows += [replace(row, due=judged[row.combo].due, newer_base=judged[row.combo].newer_base)
                 if row.combo in judged and not row.error else row
                 for row in _rows(project, in_scope, now, package_counts)]
    return StatusReport(tuple(sorted(rows, key=lambda r: (r.combo, r.region))), now)


def _rows(project: Project, in_scope: list[ResolvedVars], now: datetime,
          package_counts: dict[str, int]) -> list[ComboStatus]:
    # The deployments are read while the inventory is gathered and what is due is
    # worked out (CPU here, waiting on AWS there); the template parser is built while
    # the inventory is gathered.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="status") as pool:
        pool.submit(load_parser)
        reading = pool.submit(_last_deployments, project, in_scope)
        facts = inventory.gather(project, in_scope)
        rows = _judged(project, in_scope, facts, now, package_counts)
        deployments = reading.result()
    return [replace(row, deployment=deployments.get(row.combo)) if not row.error else row
            for row in rows]


def _judged(project: Project, in_scope: list[ResolvedVars], facts: inventory.Inventory,
            now: datetime, package_counts: dict[str, int]) -> list[ComboStatus]:
    """Every combo's row but its last deployment."""
    copies = _copies(facts)
    rows = []
    for resolved in in_scope:
        settings = resolved.settings
        combo = resolved.combo
        where = (settings.aws_account_id, settings.aws_region)
        shown = len(settings.aws_regions) > 1
        problem = facts.problems.get(combo)
        if problem is not None:
            rows.append(ComboStatus(combo, *where, error=problem, region_shown=shown))
            continue
        try:
            rows.append(replace(_row(project, facts, facts.facts[combo], now, copies,
                                     package_counts), region_shown=shown))
        except BuilderError as exc:
            rows.append(ComboStatus(combo, *where, error=exc.format(project.root),
                                    region_shown=shown))
    return rows


def _row(project: Project, facts: inventory.Inventory, combo_facts: ComboFacts,
         now: datetime, copies: Mapping[tuple[str, str, str], list[tuple[Combo, str]]],
         counts: dict[str, int]) -> ComboStatus:
    settings = combo_facts.settings
    running = combo_facts.running
    ours = running is not None and amis.combo_of(running) == combo_facts.combo
    base_ami = running.source_ami if running is not None and ours else ""
    newest_base = combo_facts.newest_base
    newest = combo_facts.newest
    return ComboStatus(
        combo_facts.combo, settings.aws_account_id, settings.aws_region,
        ami_id=combo_facts.running_id, ami_name=running.name if running else "",
        built_at=amis.built_at(running) if running is not None else None,
        status=running.status if running is not None else "",
        base_ami=base_ami,
        base_name=running.tags.get(amis.TAG_SOURCE_AMI_NAME, "") if running and ours else "",
        newer_base=newest_base.id if base_ami and base_ami != newest_base.id else "",
        due=decide(project, facts, combo_facts, now),
        promoted_from=running.tags.get(amis.TAG_PROMOTED_FROM, "") if running else "",
        unreleased=newest.id if newest is not None and newest.id != combo_facts.running_id
        and newest.created > (running.created if running is not None else _EPOCH) else "",
        packages=package_count(project, running, counts) if running is not None and ours
        else None,
        copies=tuple(copies.get(_lineage_key(combo_facts.combo, combo_facts.running_id), ())))


def _lineage_key(combo: Combo, ami_id: str) -> tuple[str, str, str]:
    """(app, comp, `builder:promoted-from` value) that copies of this combo's AMI carry."""
    return combo.app, combo.comp, f"{combo.env}/{ami_id}"


def _copies(facts: inventory.Inventory) -> dict[tuple[str, str, str], list[tuple[Combo, str]]]:
    """The promoted copies among the gathered AMIs, by the AMI they were copied from."""
    found: dict[tuple[str, str, str], list[tuple[Combo, str]]] = {}
    for combo_facts in facts.facts.values():
        combo = combo_facts.combo
        for image in combo_facts.images:
            source = image.tags.get(amis.TAG_PROMOTED_FROM, "")
            if source:
                found.setdefault((combo.app, combo.comp, source), []).append((combo, image.id))
    return found


def package_count(project: Project, image: amis.Image, known: dict[str, int]) -> int | None:
    """How many packages the image holds, from its bake's packages.json when that file is
    here and is the one its `builder:packages-sha256` tag names; None otherwise. `known`:
    the counts already read, by digest (a promoted copy shares its source's)."""
    expected = image.tags.get(amis.TAG_PACKAGES_SHA256, "")
    if expected in known:
        return known[expected]
    folder = build_folder(project, image)
    if not expected or folder is None:
        return None
    try:
        data = (folder / MANIFEST).read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != expected:
        return None
    try:
        known[expected] = len(json.loads(data))
    except (ValueError, TypeError):
        return None
    return known[expected]


def _last_deployments(project: Project, resolved: Iterable[ResolvedVars]
                      ) -> Mapping[Combo, LastDeployment]:
    """Each combo's group's last attempted deployment: one call per application (and
    100 groups) in each account and region."""
    wanted: dict[tuple[AwsTarget, str], dict[str, list[Combo]]] = {}
    for each in resolved:
        settings = each.settings
        groups = wanted.setdefault((AwsTarget.of(settings), settings.codedeploy_application), {})
        groups.setdefault(settings.codedeploy_deployment_group, []).append(each.combo)
    found: dict[Combo, LastDeployment] = {}
    for (target, application), groups in wanted.items():
        client = project.aws.env(target).client("codedeploy")
        try:
            infos = codedeploy.groups(client, application, sorted(groups))
        except AwsError as exc:
            if exc.code != "ApplicationDoesNotExistException":
                unknown = LastDeployment("", f"unreadable ({exc.code or exc.message})", "")
                found.update((c, unknown) for combos in groups.values() for c in combos)
            continue
        for info in infos:
            if not info.last_attempted:
                continue
            when = info.last_attempted_at
            shown = when.astimezone(UTC).isoformat(timespec="seconds") if when else ""
            last = LastDeployment(info.last_attempted, info.last_attempted_status, shown)
            found.update((combo, last) for combo in groups.get(info.name, []))
    return found


def age_text(days: float | None) -> str:
    """An age as the table shows it: whole days, or hours under one day; "-" unknown."""
    if days is None:
        return "-"
    return f"{days:.0f}d" if days >= 1 else f"{days * 24:.0f}h"
