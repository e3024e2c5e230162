"""Release in every region of a multi-region env: the single-region release once per
region, in parallel threads, each under its own region's lock; one record lists them.

    AMI in the bake region ─> its copy (same fingerprint) in each other region
      ─> release.release(region=R) for every R at once ─> one result, one record

The AMIs are found before anything changes: a region without a copy refuses the whole
release. A region that fails rolls itself back (release.release does); the regions that
succeeded stay released, the result says so, and its exit code is the failure's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder import private
from builder.aws import EnvAws
from builder.aws import images as amis
from builder.aws.calls import runs
from builder.batch import in_threads
from builder.config.layers import ResolvedVars
from builder.config.models import Combo
from builder.errors import BuilderError, Interrupted, RefusedError
from builder.interrupts import Cancel
from builder.output import ProgressFn, silent
from builder.project import Project
from builder.release import release as single
from builder.release.release import ReleaseOutcome, ReleaseResult

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


@dataclass(frozen=True)
class RegionRelease:
    """One region's part: its release, or the error that ended it."""

    region: str
    ami_id: str
    result: ReleaseResult | None = None
    error: BuilderError | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"region": self.region, "ami_id": self.ami_id}
        if self.result is not None:
            document.update(outcome=self.result.outcome, release=self.result.to_json())
        if self.error is not None:
            document.update(outcome=ReleaseOutcome.FAILED, error=self.error.message,
                            exit_code=self.error.exit_code)
        return document


@dataclass(frozen=True)
class RegionsResult:
    """A release in several regions of one env: each region's part and the record."""

    combo: Combo
    regions: tuple[RegionRelease, ...]
    record: Path | None = None

    @property
    def exit_code(self) -> int:
        return max((part.error.exit_code for part in self.regions if part.error), default=0)

    @property
    def outcome(self) -> str:
        """One word for all regions: their common outcome, else failed or mixed."""
        outcomes = {part.result.outcome if part.result else ReleaseOutcome.FAILED
                    for part in self.regions}
        return (outcomes.pop() if len(outcomes) == 1
                else ReleaseOutcome.FAILED if self.failed else "mixed")

    @property
    def summary(self) -> str:
        """Each region's outcome on one line."""
        return ", ".join(f"{part.region} {part.result.outcome if part.result else 'FAILED'}"
                         for part in self.regions)

    @property
    def succeeded(self) -> tuple[str, ...]:
        return tuple(part.region for part in self.regions if part.result is not None)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(part.region for part in self.regions if part.error is not None)

    def to_json(self) -> dict[str, Any]:
        return {"app": self.combo.app, "env": self.combo.env, "comp": self.combo.comp,
                "regions": [part.to_json() for part in self.regions],
                "succeeded": list(self.succeeded), "failed": list(self.failed),
                "record": str(self.record) if self.record else None,
                "exit_code": self.exit_code}

    def to_text(self) -> str:
        lines = []
        for part in self.regions:
            if part.result is not None:
                lines.append(f"[{part.region}] " + part.result.to_text())
            elif part.error is not None:
                lines.append(f"[{part.region}] {self.combo}: FAILED: {part.error.message}")
        if self.failed and self.succeeded:
            lines.append(f"{self.combo}: failed in {', '.join(self.failed)} (rolled back "
                         f"there); {', '.join(self.succeeded)} stay released")
        elif self.failed:
            lines.append(f"{self.combo}: failed in every region ({', '.join(self.failed)})")
        if self.record:
            lines.append(f"record: {self.record}")
        return "\n".join(lines)


@runs("release")
def release(project: Project, combo: Combo, *, region: str | None = None,
            ami_id: str | None = None, progress: ProgressFn = silent,
            cancel: Cancel | None = None, lock_held: bool = False,
            **options: Any) -> ReleaseResult | RegionsResult:
    """Release the combo in every region of its env (`region`: only that one).

    An env of one region, or one region asked for, is the single-region release as it
    always was (its ReleaseResult, its errors). Else `ami_id` (default: the newest usable
    AMI of the bake region) names an AMI of the bake region and each other region
    releases its copy; `options` go to each release (revision, deploy, wait, ...).
    lock_held: the caller (promote) holds the bake region's lock; the others take theirs.
    """
    cancel = cancel or Cancel()
    resolved = project.resolve(combo.app, combo.env, combo.comp)
    settings = resolved.settings
    if region is not None or len(settings.aws_regions) == 1:
        return single.release(project, combo, ami_id=ami_id, region=region, progress=progress,
                              cancel=cancel, lock_held=lock_held and region in (
                                  None, settings.bake_region), **options)
    by_region = {r: resolved.in_region(r) for r in settings.aws_regions}
    envs = {r: project.env_aws(v) for r, v in by_region.items()}
    for env_aws in envs.values():
        # The clients a release uses, made before the threads start: making one is slow
        # and serialized on the account's session.
        env_aws.client("ec2"), env_aws.client("autoscaling")
        env_aws.client("codedeploy"), env_aws.client("dynamodb")
    ami_by_region = region_amis(envs, by_region, ami_id, progress)
    started_at = datetime.now(UTC)

    def one(region_name: str) -> RegionRelease:
        ami = ami_by_region[region_name]
        try:
            return RegionRelease(region_name, ami, result=single.release(
                project, combo, ami_id=ami, region=region_name, progress=progress,
                cancel=cancel, lock_held=lock_held and region_name == settings.bake_region,
                **options))
        except Interrupted:
            raise
        except BuilderError as exc:
            progress(f"{combo} {region_name}", f"release FAILED: {exc.message}")
            return RegionRelease(region_name, ami, error=exc)

    parts = in_threads(list(settings.aws_regions), one, jobs=len(settings.aws_regions),
                       what="release")
    cancel.raise_if_set()
    result = RegionsResult(combo, tuple(parts))
    return replace(result, record=_record(project, result, started_at,
                                          ami_by_region[settings.bake_region]))


def region_amis(envs: Mapping[str, EnvAws], by_region: Mapping[str, ResolvedVars],
                ami_id: str | None, progress: ProgressFn = silent) -> dict[str, str]:
    """The AMI each region releases: `ami_id` (else the newest usable AMI) of the bake
    region, and in every other region its copy (the same fingerprint).
    Refuses (nothing changed) when a region has none."""
    bake = next(iter(by_region.values()))
    combo, bake_region = bake.combo, bake.settings.bake_region
    ec2 = envs[bake_region].client("ec2")
    if ami_id is None:
        usable = [i for i in amis.images_of(ec2, combo) if i.status in amis.USABLE_STATUSES]
        if not usable:
            raise RefusedError(f"{combo}: no available baked, released or verified AMI in "
                               f"{bake_region}; bake one first")
        image = usable[0]
    else:
        image = amis.images_by_id(ec2, [ami_id]).get(ami_id) or _missing(combo, ami_id,
                                                                        bake_region)
    wanted = {r: image.id for r in by_region if r == bake_region}
    for region_name in by_region:
        if region_name != bake_region:
            wanted[region_name] = copy_in_region(envs[region_name].client("ec2"), combo, image,
                                                 region_name).id
    progress(str(combo), "AMIs: " + ", ".join(f"{r} {a}" for r, a in wanted.items()))
    return wanted


def copy_in_region(ec2: EC2Client, combo: Combo, image: amis.Image, region: str
                   ) -> amis.Image:
    """The complete copy of `image` in another region: an AMI there with its fingerprint
    (the same inputs: a bake found it instead of copying again), of its build when there
    is one; one a failed release tagged `failed` counts too, as `--ami` may name a
    failed AMI."""
    fingerprint = image.tags.get(amis.TAG_FINGERPRINT)
    build = image.tags.get(amis.TAG_BUILD_ID)
    copies = [i for i in amis.images_of(ec2, combo, fingerprint=fingerprint)
              if i.status not in (amis.AmiStatus.BUILDING, "")] if fingerprint else []
    copies.sort(key=lambda i: i.tags.get(amis.TAG_BUILD_ID) != build)  # stable: newest next
    if not copies:
        raise RefusedError(f"{combo}: {image.id} has no complete copy in {region} (a bake "
                           "copies its AMI to every region of the env: bake again)")
    return copies[0]


def _missing(combo: Combo, ami_id: str, region: str) -> amis.Image:
    raise RefusedError(f"{combo}: {ami_id}: no such AMI in the bake region {region} (give "
                       "--region to release another region's AMI)")


def _record(project: Project, result: RegionsResult, started_at: datetime, ami_id: str
            ) -> Path:
    """<root>/.builder/releases/<app>/<env>/<comp>/<UTC time>-regions-<bake AMI>.json"""
    combo = result.combo
    folder = project.layout.state_dir / "releases" / combo.app / combo.env / combo.comp
    private.make_folders(folder)
    path = folder / f"{started_at:%Y%m%dT%H%M%SZ}-regions-{ami_id}.json"
    private.write_text(path, json.dumps(replace(result, record=path).to_json(), indent=2)
                       + "\n")
    return path
