"""`bake ... --release`: release the AMI of every bake that worked, comps in parallel."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from builder.aws.calls import runs
from builder.bake.build import BakeFailure, BakeResult
from builder.config.models import Combo
from builder.errors import BuilderError, Interrupted
from builder.interrupts import Cancel
from builder.output import Progress, ProgressFn, table
from builder.project import Project
from builder.release.release import ReleaseResult, release


@dataclass(frozen=True)
class ReleaseFailure:
    combo: Combo
    error: BuilderError

    def to_json(self) -> dict[str, Any]:
        return {"app": self.combo.app, "env": self.combo.env, "comp": self.combo.comp,
                "error": self.error.message, "exit_code": self.error.exit_code}

    def to_text(self) -> str:
        return f"{self.combo}: release FAILED: {self.error.message}"


Baked = BakeResult | BakeFailure
Released = ReleaseResult | ReleaseFailure


@dataclass(frozen=True)
class BakeAndRelease:
    """`bake ... --release`: per comp, its bake and (when the bake worked) its release."""

    outcomes: tuple[tuple[Baked, Released | None], ...]

    @property
    def exit_code(self) -> int:
        """0 when every comp was baked and released, else the worst failure's code."""
        errors = [o.error for pair in self.outcomes for o in pair
                  if isinstance(o, BakeFailure | ReleaseFailure)]
        return max((error.exit_code for error in errors), default=0)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"bake": baked.to_json(), "release": released.to_json() if released else None}
                for baked, released in self.outcomes]

    def to_text(self) -> str:
        rows = []
        for baked, released in self.outcomes:
            bake_text = ("FAILED" if isinstance(baked, BakeFailure)
                         else "skipped" if baked.skipped else "baked")
            if isinstance(baked, BakeFailure):
                rows.append((str(baked.combo), bake_text, "-", "-", baked.error.message))
            elif isinstance(released, ReleaseFailure):
                rows.append((str(baked.combo), bake_text, baked.ami_id, "FAILED",
                             released.error.message))
            elif released is not None:
                rows.append((str(baked.combo), bake_text, baked.ami_id, released.outcome,
                             released.asg_after or released.asg_before or "-"))
        details = [released.to_text() for _, released in self.outcomes
                   if isinstance(released, ReleaseResult)]
        return "\n\n".join([table(("combo", "bake", "AMI", "release",
                                   "Auto Scaling group / error"), rows), *details])


@runs("release")
def release_baked(project: Project, baked: Sequence[Baked], *,
                  progress: ProgressFn | None = None,
                  cancel: Cancel | None = None) -> BakeAndRelease:
    """Release the AMI of every successful bake (skipped ones too), comps in parallel:
    each has its own lock and deployment group. One failure doesn't stop the others."""
    cancel = cancel or Cancel()
    report = progress or Progress()

    def one(outcome: Baked) -> tuple[Baked, Released | None]:
        if isinstance(outcome, BakeFailure):
            return outcome, None
        try:
            return outcome, release(project, outcome.combo, ami_id=outcome.ami_id,
                                    progress=report, cancel=cancel)
        except Interrupted:
            raise
        except BuilderError as exc:
            report(str(outcome.combo), f"release FAILED: {exc.message}")
            return outcome, ReleaseFailure(outcome.combo, exc)

    workers = max(1, min(len(baked), 4))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="release") as pool:
        outcomes = tuple(pool.map(one, baked))
    cancel.raise_if_set()
    return BakeAndRelease(outcomes)
