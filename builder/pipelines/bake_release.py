"""`bake ... --release`: release the AMI of every bake that worked, comps in parallel."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from builder.aws.calls import runs
from builder.bake.build import BakeResult
from builder.batch import Failed, Ok, run_each
from builder.interrupts import Cancel
from builder.output import ProgressFn, silent, table
from builder.project import Project
from builder.release.regions import RegionsResult, release
from builder.release.release import ReleaseResult

Baked = BakeResult | Failed
Released = ReleaseResult | RegionsResult | Failed


@dataclass(frozen=True)
class BakeAndRelease:
    """`bake ... --release`: per comp, its bake and (when the bake worked) its release."""

    outcomes: tuple[tuple[Baked, Released | None], ...]

    @property
    def exit_code(self) -> int:
        """0 when every comp was baked and released, else the worst failure's code."""
        return max((o.exit_code for pair in self.outcomes for o in pair
                    if isinstance(o, Failed | RegionsResult)), default=0)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"bake": baked.to_json(), "release": released.to_json() if released else None}
                for baked, released in self.outcomes]

    def to_text(self) -> str:
        rows = []
        for baked, released in self.outcomes:
            bake_text = ("FAILED" if isinstance(baked, Failed)
                         else "skipped" if baked.skipped else "baked")
            if isinstance(baked, Failed):
                rows.append((str(baked.combo), bake_text, "-", "-", baked.error.message))
            elif isinstance(released, Failed):
                rows.append((str(baked.combo), bake_text, baked.ami_id, "FAILED",
                             released.error.message))
            elif isinstance(released, RegionsResult):
                rows.append((str(baked.combo), bake_text, baked.ami_id, released.outcome,
                             released.summary))
            elif released is not None:
                rows.append((str(baked.combo), bake_text, baked.ami_id, released.outcome,
                             released.asg_after or released.asg_before or "-"))
        details = [released.to_text() for _, released in self.outcomes
                   if isinstance(released, ReleaseResult | RegionsResult)]
        return "\n\n".join([table(("combo", "bake", "AMI", "release",
                                   "Auto Scaling group / error"), rows), *details])


@runs("release")
def release_baked(project: Project, baked: Sequence[Baked], *,
                  progress: ProgressFn = silent,
                  cancel: Cancel | None = None) -> BakeAndRelease:
    """Release the AMI of every successful bake (skipped ones too), comps in parallel:
    each has its own lock and deployment group. One failure doesn't stop the others."""
    cancel = cancel or Cancel()
    ami_of = {b.combo: b.ami_id for b in baked if isinstance(b, BakeResult)}
    released = run_each(
        list(ami_of), lambda combo: release(project, combo, ami_id=ami_of[combo],
                                            progress=progress, cancel=cancel),
        jobs=None, cancel=cancel, progress=progress, what="release")
    by_combo = {o.combo: o.value if isinstance(o, Ok) else o for o in released}
    return BakeAndRelease(tuple((b, by_combo.get(b.combo)) for b in baked))
