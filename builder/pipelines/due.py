"""Whether a combo needs work, and why: the one decision `rebuild` plans with and
`status` shows.

An env with `promote_from` takes its AMIs from that env ("promote" when the source
runs a verified AMI newer than its own); every other env bakes: when it has no AMI yet,
when its base image has a newer release than the newest AMI's `builder:source-ami`,
when the inputs of that AMI's fingerprint changed, or when the AMI is older than
`rebuild_max_age_days`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from builder.aws import images as amis
from builder.aws.images import Image
from builder.bake.fingerprint import changed_parts
from builder.bake.plan import pin_source
from builder.config.models import Combo
from builder.pipelines.inventory import ComboFacts, Inventory, promote_source
from builder.project import Project


class Action(StrEnum):
    """What a rebuild does with a combo (`action` in its plan)."""

    BAKE = "bake"
    PROMOTE = "promote"
    SKIP = "skip"
    ERROR = "error"  # the combo's config or AWS view failed: neither planned nor run


@dataclass(frozen=True)
class Due:
    """What a combo needs (bake, promote or skip) and why."""

    action: Action  # never ERROR: that is the plan's, for combos not decided
    reasons: tuple[str, ...]
    # Bake even though an AMI with this fingerprint exists (it is too old).
    force: bool = False

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def decide(project: Project, inventory: Inventory, facts: ComboFacts,
           now: datetime | None = None) -> Due:
    """Whether a combo is due: promote for envs with promote_from, else bake."""
    source = promote_source(facts.combo, facts.settings)
    if source is not None:
        return promote_due(facts, inventory.facts.get(source), source.env)
    return bake_due(project, facts, now or datetime.now(UTC))


def bake_due(project: Project, facts: ComboFacts, now: datetime) -> Due:
    """Bake when there is no AMI, the base image is newer, the inputs changed, or the
    AMI is too old."""
    newest = facts.newest
    if newest is None:
        return Due(Action.BAKE, ("no AMI yet",))
    reasons: list[str] = []
    base = facts.newest_base
    if newest.source_ami != base.id:
        reasons.append(_base_change(facts, newest, base))
    changed = _changed_inputs(project, facts, newest)
    if changed:
        reasons.append(changed)
    age = (now - amis.built_at(newest)).total_seconds() / 86400
    limit = facts.settings.rebuild_max_age_days
    too_old = age > limit
    if too_old:
        reasons.append(f"{newest.id} is {age:.0f} days old (rebuild_max_age_days {limit})")
    if reasons:
        return Due(Action.BAKE, tuple(reasons), force=too_old)
    return Due(Action.SKIP, (f"up to date: {newest.id}, built from {base.id}, {age:.0f} days old",))


def promote_due(facts: ComboFacts, source: ComboFacts | None, source_env: str) -> Due:
    """Promote when the source env runs a verified AMI newer than this env's."""
    if source is None:
        return Due(Action.SKIP, (f"no {source_env}/{facts.combo.comp} to promote from",))
    candidate = source.running
    if (candidate is None or amis.combo_of(candidate) != source.combo
            or candidate.status != amis.AmiStatus.VERIFIED):
        shown = f" ({source.running_id})" if source.running_id else ""
        return Due(Action.SKIP, (f"{source_env} runs no verified AMI{shown}",))
    running = facts.running
    if running is not None and running.tags.get(amis.TAG_PROMOTED_FROM) == (
            f"{source_env}/{candidate.id}"):
        how = "rebake" if amis.TAG_SOURCE_FINGERPRINT in running.tags else "copy"
        return Due(Action.SKIP, (f"runs {running.id}, the {how} of {source_env}'s verified "
                          f"{candidate.id}",))
    if (running is not None and amis.combo_of(running) == facts.combo
            and amis.built_at(running) >= amis.built_at(candidate)):
        return Due(Action.SKIP, (f"runs {running.id}, not older than {source_env}'s verified "
                          f"{candidate.id}",))
    return Due(Action.PROMOTE, (f"{source_env} runs a newer verified AMI {candidate.id} than "
                         f"{facts.running_id or 'nothing'}",))


def _base_change(facts: ComboFacts, newest: Image, base: Image) -> str:
    if facts.settings.source_ami:
        return f"source_ami is now {base.id} ({newest.id} was built from {newest.source_ami})"
    old = next((b for b in facts.bases if b.id == newest.source_ami), None)
    verb = "newer" if old is None or base.created >= old.created else "different"
    return f"{verb} base image {base.id} ({base.name}) than {newest.source_ami or 'unknown'}"


def _changed_inputs(project: Project, facts: ComboFacts, newest: Image) -> str:
    """What changed since the newest AMI was baked, on its own base image (a newer base
    is a reason of its own). Empty when nothing did."""
    same_base = Image(id=newest.source_ami, name=newest.tags.get(amis.TAG_SOURCE_AMI_NAME, ""),
                      state="available", owner="", created=newest.created)
    _, _, current = pin_source(project, facts.resolved, same_base)
    if current.value == newest.fingerprint:
        return ""
    before = previous_inputs(project, facts.combo, newest)
    if before is None:
        return (f"inputs changed since {newest.id} (its build's inputs aren't in "
                ".builder/builds to say which)")
    parts = changed_parts(before, current.inputs)
    return f"changed since {newest.id}: {', '.join(parts) if parts else 'inputs'}"


def previous_inputs(project: Project, combo: Combo, image: Image) -> Mapping[str, Any] | None:
    """The fingerprint inputs a bake of this image saved, when it ran from this root."""
    builds = project.layout.state_dir / "builds" / combo.app / combo.env / combo.comp
    build_id = image.tags.get(amis.TAG_BUILD_ID, "")
    candidates = [builds / build_id] if build_id else []
    candidates += sorted(builds.glob("*"), reverse=True) if builds.is_dir() else []
    for folder in candidates:
        saved = _load(folder / "fingerprint.json")
        if saved is not None and saved.get("fingerprint") == image.fingerprint:
            inputs = saved.get("inputs")
            return inputs if isinstance(inputs, dict) else None
    return None


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
