"""A multi-region env's bake copies its AMI from the bake region to each other region:
in parallel threads, re-encrypted with that region's kms key, tagged with the AMI's tags
and lineage (`builder:copied-from=<region>/<ami>`), `building` until complete like the
AMI itself. A region that already has a complete copy with the fingerprint is skipped.
A copy that fails removes every copy this run made (image and snapshots) and fails the
bake, which then removes its own AMI.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from builder.aws import images as amis
from builder.aws import temporary, translate
from builder.batch import in_threads
from builder.config.layers import ResolvedVars
from builder.errors import BakeFailed, BuilderError, TimedOut
from builder.interrupts import Cancel
from builder.output import ProgressFn
from builder.polling import Growing, poll_until
from builder.project import Project

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import CopyImageRequestTypeDef

COPY_TIMEOUT_MIN = 180.0
_FIRST_POLL_S, _MAX_POLL_S = 0.25, 15.0
# What a copy's tags don't take from the AMI: the run of the copy is its own.
_OWN_TAGS = (amis.TAG_RUN_ID, amis.TAG_OWNER, temporary.TAG_STARTED_AT)


@dataclass(frozen=True)
class RegionCopy:
    """The AMI's copy in one region: made by this bake, or one found complete."""

    region: str
    ami_id: str
    made: bool

    def to_json(self) -> dict[str, object]:
        return {"region": self.region, "ami_id": self.ami_id, "made": self.made}


def copy_to_regions(project: Project, resolved: ResolvedVars, image: amis.Image, *,
                    progress: ProgressFn, cancel: Cancel,
                    timeout_min: float = COPY_TIMEOUT_MIN) -> tuple[RegionCopy, ...]:
    """Copy `image` (complete, in the bake region) to every other region of the env and
    wait for the copies; they are tagged like `image` (its status included: the caller
    retags them with it when the bake completes). Nothing for a one-region env."""
    others = resolved.settings.other_regions
    if not others:
        return ()
    clients = {region: project.env_aws(resolved.in_region(region)).client("ec2")
               for region in others}
    run_id = uuid.uuid4().hex[:12]
    subject = str(resolved.combo)

    def one(region: str) -> RegionCopy:
        return _Copy(clients[region], resolved.in_region(region), image, run_id, subject,
                     progress, cancel, timeout_min).run()

    try:
        return tuple(in_threads(list(others), one, jobs=len(others), what="copy"))
    except BaseException:
        # Each thread has ended; the copies of this run that are left (those that did
        # complete, in the regions that didn't fail) go too: no half-copied bake.
        _discard_run(clients, run_id, progress, subject)
        raise


def retag(project: Project, resolved: ResolvedVars, copies: tuple[RegionCopy, ...],
          tags: Mapping[str, str]) -> None:
    """The bake's final tags, on the copies it made, after their deprecation time (EC2
    doesn't carry it over to a copy)."""
    for copy in copies:
        if copy.made:
            ec2 = project.env_aws(resolved.in_region(copy.region)).client("ec2")
            image = amis.images_by_id(ec2, [copy.ami_id])[copy.ami_id]
            amis.deprecate(ec2, image, resolved.settings.ami_deprecate_after_days)
            amis.set_tags(ec2, image, tags)


class _Copy:
    """One region's copy: found complete, or made and waited for."""

    def __init__(self, ec2: EC2Client, target: ResolvedVars, image: amis.Image, run_id: str,
                 subject: str, progress: ProgressFn, cancel: Cancel, timeout_min: float):
        self.ec2, self.target, self.image = ec2, target, image
        self.region = target.settings.aws_region
        self.run_id, self.progress, self.cancel = run_id, progress, cancel
        self.subject = f"{subject} {self.region}"
        self.timeout_min = timeout_min

    def run(self) -> RegionCopy:
        fingerprint = self.image.tags.get(amis.TAG_FINGERPRINT)
        complete = [i for i in amis.images_of(self.ec2, self.target.combo,
                                              fingerprint=fingerprint)
                    if i.status in amis.USABLE_STATUSES] if fingerprint else []
        if complete:
            self.progress(self.subject, f"{complete[0].id} has this fingerprint: no copy")
            return RegionCopy(self.region, complete[0].id, made=False)
        self.cancel.raise_if_set()
        copy_id = self._start()
        self.progress(self.subject, f"copying {self.image.id} to {copy_id}")
        try:
            poll_until(self._available(copy_id), timeout_s=self.timeout_min * 60,
                       interval_s=Growing(_FIRST_POLL_S, factor=2, longest_s=_MAX_POLL_S),
                       what=f"copying {self.image.id} to {self.region}", cancel=self.cancel)
        except TimedOut as exc:
            raise BakeFailed(f"{self.subject}: {exc.message}") from exc
        self.progress(self.subject, f"{copy_id} is available")
        return RegionCopy(self.region, copy_id, made=True)

    def _start(self) -> str:
        settings, image = self.target.settings, self.image
        key = settings.kms_key
        request: CopyImageRequestTypeDef = {
            "SourceImageId": image.id, "SourceRegion": settings.bake_region,
            "Name": image.name, "Description": f"{self.target.combo}: copy of {image.id}",
            "ClientToken": f"builder-{self.run_id}-{self.region}",
            "Encrypted": settings.encrypt_boot or image.encrypted or bool(key)}
        if key:
            request["KmsKeyId"] = key
        with translate(f"copying {image.id} to {self.region}"):
            copy_id = str(self.ec2.copy_image(**request)["ImageId"])
        tags = {k: v for k, v in image.tags.items() if k not in _OWN_TAGS
                and not k.startswith(amis.TAG_VERIFIED_PREFIX)}
        tags.update({amis.TAG_COPIED_FROM: f"{settings.bake_region}/{image.id}",
                     amis.TAG_STATUS: amis.AmiStatus.BUILDING, amis.TAG_RUN_ID: self.run_id,
                     amis.TAG_OWNER: amis.owner(),
                     temporary.TAG_STARTED_AT: datetime.now(UTC).isoformat(timespec="seconds")})
        pending = amis.Image(copy_id, image.name, "pending", settings.aws_account_id,
                             datetime.now(UTC))
        amis.set_tags(self.ec2, pending, tags)
        return copy_id

    def _available(self, copy_id: str) -> Callable[[], amis.Image | None]:
        def check() -> amis.Image | None:
            found = amis.images_by_id(self.ec2, [copy_id]).get(copy_id)
            state = found.state if found is not None else "pending"  # not known yet
            if found is not None and state == "available":
                return found
            if state in ("failed", "error", "invalid", "deregistered"):
                raise BakeFailed(f"{self.subject}: the copy {copy_id} of {self.image.id} "
                                 f"ended {state}")
            return None

        return check


def _discard_run(clients: Mapping[str, EC2Client], run_id: str, progress: ProgressFn,
                 subject: str) -> None:
    for region, ec2 in clients.items():
        try:
            for image in amis.images_of_run(ec2, run_id):
                progress(f"{subject} {region}", f"removing the copy {image.id}")
                amis.deregister(ec2, image)
            for snapshot in amis.snapshots_of_run(ec2, run_id):
                amis.delete_snapshot(ec2, snapshot)
        except BuilderError as exc:
            progress(f"{subject} {region}", f"could not remove this run's copies "
                                            f"({exc.message}); `builder reap` will")
