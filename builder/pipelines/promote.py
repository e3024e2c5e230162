"""`builder promote APP COMP --to ENV`: the AMI that passed the `promote_from` env,
copied into the target env's account and region, re-encrypted with its key, tagged
with its lineage, and released there.

Preflight first: envs in different partitions (builder.aws.partition) can't share nor
copy an AMI, so such a promotion is refused unless the target env sets `promote_by:
rebake` (builder.pipelines.rebake: the target bakes from the same inputs, checked by
fingerprint, and releases that). For a copy, nothing changes until every permission is
known to be there or addable; then share → copy → wait (the tool's own deadline) → tag
→ unshare → release, all under the target comp's lock. The copy is `building` until it is
available and tagged. A copy already made from that AMI for that env is reused, so a
re-run after any failure picks up where the last one stopped; a failed or abandoned copy
is deregistered and the share removed, so nothing is left half-done. After a kill -9,
the share is recorded on the source AMI (builder.aws.sharing) and the re-run removes it
and the killed run's incomplete twin copies.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from builder.aws import EnvAws, fleet, sharing, temporary, translate
from builder.aws import images as amis
from builder.aws.calls import runs
from builder.aws.images import Image
from builder.aws.partition import partition_of
from builder.bake import regions
from builder.bake.regions import RegionCopy
from builder.config.keys import AMI_ID_RE
from builder.config.layers import ResolvedVars
from builder.config.models import Combo, PromoteBy
from builder.errors import (
    AwsError,
    ConfigError,
    InputError,
    PromotionFailed,
    RefusedError,
    TimedOut,
)
from builder.interrupts import Cancel
from builder.output import ProgressFn, silent
from builder.pipelines import rebake
from builder.polling import Growing, poll_until
from builder.project import Project
from builder.release import lock

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import CopyImageRequestTypeDef

    from builder.release.regions import RegionsResult
    from builder.release.release import ReleaseResult

COPY_TIMEOUT_MIN = 180.0
# Polling a copy: quick at first (small images, the emulator), then every 15 s.
_FIRST_POLL_S, _MAX_POLL_S = 0.5, 15.0
_UNKNOWN_GRACE_S = 60.0
# The promotion lock outlives the copy's deadline by this much (the release after it).
_LOCK_MARGIN_MIN = 60.0
# Tags of the source that describe the source env, not the image's content.
_NOT_INHERITED = (amis.TAG_ENV, amis.TAG_STATUS, amis.TAG_PROMOTED_FROM, amis.TAG_RUN_ID,
                  amis.TAG_OWNER, temporary.TAG_STARTED_AT, "Name")


@dataclass(frozen=True)
class PromoteResult:
    """A promoted AMI: the source, the copy in the target env, and its release."""

    combo: Combo  # the target
    source_env: str
    source_ami: str
    source_account: str
    source_region: str
    ami_id: str  # the copy in the target env
    account: str
    region: str
    reused: bool  # the copy (or the rebaked AMI) was made by an earlier run
    shared: bool  # a share (and maybe a KMS grant) was added, then removed
    released: ReleaseResult | RegionsResult | None
    duration_s: float
    promote_by: PromoteBy = PromoteBy.COPY
    notes: tuple[str, ...] = ()  # a rebake's base image that is not the source's
    copies: tuple[RegionCopy, ...] = ()  # in the other regions of a multi-region target

    @property
    def exit_code(self) -> int:
        return self.released.exit_code if self.released is not None else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.combo.app, "env": self.combo.env, "comp": self.combo.comp,
            "source_env": self.source_env, "source_ami": self.source_ami,
            "source_account": self.source_account, "source_region": self.source_region,
            "ami_id": self.ami_id, "account": self.account, "region": self.region,
            "reused": self.reused, "shared": self.shared,
            "promote_by": self.promote_by.value, "notes": list(self.notes),
            "promoted_from": f"{self.source_env}/{self.source_ami}",
            "copies": [copy.to_json() for copy in self.copies],
            "release": self.released.to_json() if self.released is not None else None,
            "duration_s": round(self.duration_s, 2),
        }

    def to_text(self) -> str:
        how = {(PromoteBy.COPY, False): "copied", (PromoteBy.COPY, True): "reused the copy",
               (PromoteBy.REBAKE, False): "rebaked",
               (PromoteBy.REBAKE, True): "reused the rebake"}[self.promote_by, self.reused]
        lines = [f"{self.combo}: {how} {self.ami_id} ({self.account} {self.region}) of "
                 f"{self.source_env}'s verified {self.source_ami} ({self.source_account} "
                 f"{self.source_region}) in {self.duration_s:.1f}s"]
        lines.extend(f"  copy in {c.region}: {c.ami_id}" + ("" if c.made else " (found)")
                     for c in self.copies)
        lines.extend(f"  note: {note}" for note in self.notes)
        lines.append(self.released.to_text() if self.released is not None
                     else "  not released (--no-deploy): "
                          f"builder release {self.combo.app} {self.combo.env} "
                          f"{self.combo.comp} --ami {self.ami_id}")
        return "\n".join(lines)


@runs("promote")
def promote(project: Project, app: str, comp: str, to_env: str, *, ami_id: str | None = None,
            deploy: bool = True, timeout_min: float = COPY_TIMEOUT_MIN,
            break_lock: bool = False, lock_wait_s: float = 0, region: str | None = None,
            progress: ProgressFn = silent, cancel: Cancel | None = None) -> PromoteResult:
    """Copy the AMI verified in the target env's promote_from env into the target and release it.

    Checks every permission first (RefusedError/ConfigError naming all that is missing),
    then works under the target combo's lock (the one its releases take): one promotion
    into an env at a time, so two never make two copies. Reuses a copy already made from
    the same AMI, and removes the share and any grant when done. A failed copy is
    deregistered. A multi-region target: the copy is made in its bake region, copied from
    there to the others as a bake's AMI is, and released in every region (`region`: that
    one only).
    """
    if ami_id is not None and not AMI_ID_RE.fullmatch(ami_id):
        raise InputError(f"--ami {ami_id!r:.40}: not an AMI id (ami-0123456789abcdef0)")
    cancel = cancel or Cancel()
    started = time.monotonic()
    target = project.resolve(app, to_env, comp)
    source_env = target.settings.promote_from
    if not source_env:
        raise ConfigError(f"{to_env} has no promote_from: set it in vars/{app}/{to_env}/ to "
                          "the env whose verified AMIs it takes")
    source = project.resolve(app, source_env, comp)
    by = target.settings.promote_by
    refused = cross_partition_copy(source, target)
    if refused:  # before any AWS call
        raise RefusedError(refused)
    source_aws, target_aws = project.env_aws(source), project.env_aws(target)
    subject = str(target.combo)
    image = _verified_source(source_aws, source, ami_id)
    progress(subject, f"promoting {source_env}'s verified {image.id} ({image.name})"
             + (" by a rebake" if by == PromoteBy.REBAKE else ""))
    if by == PromoteBy.REBAKE:
        return _by_rebake(project, source, target, image, deploy=deploy, started=started,
                          timeout_min=timeout_min, break_lock=break_lock,
                          lock_wait_s=lock_wait_s, progress=progress, cancel=cancel)
    with lock.held(target_aws, target.combo, minutes=timeout_min + _LOCK_MARGIN_MIN,
                   break_lock=break_lock, progress=progress, wait_s=lock_wait_s,
                   cancel=cancel):
        _remove_left_shares(source_aws, image, target_aws.account_id, progress, subject)
        earlier = _existing_copy(target_aws, target, source_env, image, progress)
        reused = earlier is not None and earlier.state == "available"
        if earlier is not None and reused:
            copy, shared = earlier, False
            progress(subject, f"reusing {copy.id}, copied by an earlier run")
            if copy.status == amis.AmiStatus.BUILDING:  # that run was stopped before tagging
                amis.deprecate(target_aws.client("ec2"), copy,
                               target.settings.ami_deprecate_after_days)
                amis.set_tags(target_aws.client("ec2"), copy, _copy_tags(
                    target, image, _lineage(source_env, image), copy.name))
        else:
            copy, shared = _copy(source_aws, target_aws, source, target, image, earlier,
                                 timeout_min, progress, cancel)
        copies = regions.copy_to_regions(project, target, copy, progress=progress,
                                         cancel=cancel, timeout_min=timeout_min)
        regions.retag(project, target, copies, {amis.TAG_STATUS: amis.AmiStatus.BAKED})
        cancel.raise_if_set()
        released = None
        if deploy:
            from builder.release.regions import release

            released = release(project, target.combo, ami_id=_in_region(copy, copies, region),
                               region=region, progress=progress, cancel=cancel,
                               lock_held=True)
    return PromoteResult(target.combo, source_env, image.id, source_aws.account_id,
                         source_aws.region, copy.id, target_aws.account_id, target_aws.region,
                         reused, shared, released, time.monotonic() - started, copies=copies)


def _in_region(copy: Image, copies: tuple[RegionCopy, ...], region: str | None) -> str:
    """The promoted AMI in `region` (None: the bake region's)."""
    return next((c.ami_id for c in copies if c.region == region), copy.id)


def cross_partition_copy(source: ResolvedVars, target: ResolvedVars) -> str | None:
    """Why `target` can't promote from `source`: a copy across partitions (AWS shares and
    copies AMIs only within one), with the fix; None when it can."""
    regions = source.settings.aws_region, target.settings.aws_region
    partitions = partition_of(regions[0]), partition_of(regions[1])
    if partitions[0] == partitions[1] or target.settings.promote_by == PromoteBy.REBAKE:
        return None
    app, source_env, target_env = target.combo.app, source.combo.env, target.combo.env
    return (f"can't promote from {source_env} ({regions[0]}, partition {partitions[0]}) to "
            f"{target_env} ({regions[1]}, partition {partitions[1]}) by a copy: AWS never "
            f"shares nor copies an AMI across partitions; set `promote_by: rebake` in "
            f"vars/{app}/{target_env}/ to bake it there from the same inputs")


def _by_rebake(project: Project, source: ResolvedVars, target: ResolvedVars, image: Image, *,
               deploy: bool, started: float, timeout_min: float, break_lock: bool,
               lock_wait_s: float, progress: ProgressFn, cancel: Cancel) -> PromoteResult:
    """Check the inputs are the same (nothing written before), then under the target
    comp's lock bake there from them and release the new AMI."""
    subject = str(target.combo)
    same = rebake.check_same_inputs(project, source, target, image)
    notes = (same.base_note,) if same.base_note else ()
    for note in notes:
        progress(subject, note)
    source_aws, target_aws = project.env_aws(source), project.env_aws(target)
    with lock.held(target_aws, target.combo, minutes=timeout_min + _LOCK_MARGIN_MIN,
                   break_lock=break_lock, progress=progress, wait_s=lock_wait_s,
                   cancel=cancel):
        baked = rebake.rebake(project, target, image, _lineage(source.combo.env, image),
                              progress=progress, cancel=cancel)
        cancel.raise_if_set()
        released = None
        if deploy:
            from builder.release.regions import release

            released = release(project, target.combo, ami_id=baked.ami_id, progress=progress,
                               cancel=cancel, lock_held=True)
    return PromoteResult(target.combo, source.combo.env, image.id, source_aws.account_id,
                         source_aws.region, baked.ami_id, target_aws.account_id,
                         target_aws.region, baked.skipped, False, released,
                         time.monotonic() - started, PromoteBy.REBAKE, notes)


def _remove_left_shares(source_aws: EnvAws, image: Image, account: str,
                        progress: ProgressFn, subject: str) -> None:
    """A share of this AMI with the target account that a killed promotion left: under
    the lock no other promotion there runs, so it is removed before anything else."""
    for left in sharing.left_shares(image):
        if left.account == account:
            progress(subject, f"removing the share {left.label} a stopped promotion left "
                              f"({left.owner} at {left.started_at})")
            sharing.remove_left_share(source_aws, left)


def _verified_source(source_aws: EnvAws, source: ResolvedVars, ami_id: str | None) -> Image:
    """The AMI to promote: `--ami`, else what the source env's launch template runs;
    either way one builder made for that combo and verified there."""
    ec2 = source_aws.client("ec2")
    combo, env = source.combo, source.combo.env
    template = source.settings.launch_template_name
    wanted = ami_id or fleet.default_image(ec2, template)
    if not wanted:
        raise RefusedError(f"{env} has no launch template {template} to take the AMI from "
                           f"({source_aws.account_id} {source_aws.region}); use --ami")
    image = amis.images_by_id(ec2, [wanted]).get(wanted)
    if image is None:
        raise RefusedError(f"{wanted} not found in {env} ({source_aws.account_id} "
                           f"{source_aws.region})")
    made_for = amis.combo_of(image)
    if made_for != combo:
        raise RefusedError(f"{wanted} in {env} was not made by builder for {combo}"
                           + (f" (it is {made_for}'s)" if made_for else ""))
    if image.status != amis.AmiStatus.VERIFIED:
        raise RefusedError(
            f"{wanted} is not verified in {env} (builder:status={image.status or 'unset'}): "
            f"only an AMI whose deployment succeeded there is promoted (builder release "
            f"{combo.app} {env} {combo.comp} --ami {wanted})")
    return image


def _existing_copy(target_aws: EnvAws, target: ResolvedVars, source_env: str, image: Image,
                   progress: ProgressFn) -> Image | None:
    """The copy of `image` an earlier run made to reuse: the one verified or on the
    target's launch template, else the newest complete one, else the newest incomplete
    one still copying or copied (its run stopped). The rest of the incomplete and failed
    copies (twins of killed runs) are deregistered: under the lock, none is in use."""
    ec2 = target_aws.client("ec2")
    found = amis.describe(ec2, owners=["self"], filters={
        f"tag:{amis.TAG_PROMOTED_FROM}": [_lineage(source_env, image)],
        f"tag:{amis.TAG_ENV}": [target.combo.env], "state": ["pending", "available", "failed"]})
    if not found:
        return None
    running = fleet.default_image(ec2, target.settings.launch_template_name) if any(
        i.status != amis.AmiStatus.BUILDING for i in found) else ""
    verified = amis.verified_tag(target.combo.env)
    complete = [i for i in found if i.state == "available" and i.status in amis.USABLE_STATUSES]
    chosen = (next((i for i in complete if i.status == amis.AmiStatus.VERIFIED or verified in i.tags
                    or i.id == running), None)
              or next(iter(complete), None)
              or next((i for i in found if i.state != "failed"), None))
    for twin in found:
        if twin is not chosen and (twin.state == "failed"
                                   or twin.status not in amis.USABLE_STATUSES):
            progress(str(target.combo), f"removing {twin.id}, an incomplete copy "
                                        f"({twin.state}, {twin.status or 'untagged'}) of an "
                                        "earlier run")
            _discard(ec2, twin.id)
    return chosen


def _copy(source_aws: EnvAws, target_aws: EnvAws, source: ResolvedVars, target: ResolvedVars,
          image: Image, earlier: Image | None, timeout_min: float, progress: ProgressFn,
          cancel: Cancel) -> tuple[Image, bool]:
    """Share, copy (or wait for an earlier run's pending copy), tag, unshare."""
    subject = str(target.combo)
    ec2 = target_aws.client("ec2")
    plan = sharing.preflight(source_aws, target_aws, image,
                             target_key=target.settings.kms_key,
                             source_env=source.combo.env, target_env=target.combo.env)
    if plan.missing:
        raise RefusedError(
            f"can't promote {image.id} from {source.combo.env} ({source_aws.account_id} "
            f"{source_aws.region}) to {target.combo.env} ({target_aws.account_id} "
            f"{target_aws.region}); missing:\n"
            + "\n".join(f"  - {c.what}: {c.detail}" for c in plan.missing))
    for check in plan.checks:
        progress(subject, f"preflight: {check.what}: {check.detail}")
    lineage = _lineage(source.combo.env, image)
    with sharing.shared(source_aws, plan, name=f"builder-promote-{image.id}-{target.combo.env}"
                        ) as done:
        copy_id = earlier.id if earlier is not None else _start_copy(
            ec2, source_aws, target, image, lineage)
        progress(subject, f"copying {image.id} to {copy_id} in {target_aws.account_id} "
                          f"{target_aws.region}")
        try:
            copy = _wait_available(ec2, copy_id, image, timeout_min, progress, subject, cancel)
            amis.deprecate(ec2, copy, target.settings.ami_deprecate_after_days)
            amis.set_tags(ec2, copy, _copy_tags(target, image, lineage, copy.name))
        except BaseException:
            try:  # a stopped or failed copy is not left behind
                _discard(ec2, copy_id)
            except AwsError as exc:  # the promotion's own error is the one to tell
                progress(subject, f"could not remove the copy {copy_id}: {exc.message}")
            raise
    return copy, done.anything


def _start_copy(ec2: EC2Client, source_aws: EnvAws, target: ResolvedVars, image: Image,
                lineage: str) -> str:
    settings = target.settings
    # The source's id in the name: two sources baked in the same second stay apart, and
    # EC2 refuses a twin copy of one source under the same name.
    name = f"{settings.ami_name}-{amis.built_at(image):%Y%m%d%H%M%S}-{image.id[4:12]}"
    run_id = uuid.uuid4().hex[:12]
    request: CopyImageRequestTypeDef = {
        "SourceImageId": image.id, "SourceRegion": source_aws.region, "Name": name,
        "Description": f"{target.combo}: promoted from {lineage}"[:255],
        # Per run: a token reused after its copy was deregistered would hand back that
        # deregistered copy instead of making a new one.
        "ClientToken": f"builder-{run_id}",
        # An encrypted source stays encrypted; a key given means encryption with it.
        "Encrypted": settings.encrypt_boot or image.encrypted or bool(settings.kms_key)}
    if settings.kms_key:
        request["KmsKeyId"] = settings.kms_key
    with translate(f"copying {image.id} into {settings.aws_account_id} "
                   f"{settings.aws_region}"):
        copy_id = str(ec2.copy_image(**request)["ImageId"])
    # Tagged at once (incomplete, with the run and its owner), so a re-run after a crash
    # finds the pending copy and `builder reap` knows whose it is.
    pending = Image(copy_id, name, "pending", settings.aws_account_id, datetime.now(UTC))
    amis.set_tags(ec2, pending, {
        **_copy_tags(target, image, lineage, name), amis.TAG_STATUS: amis.AmiStatus.BUILDING,
        amis.TAG_RUN_ID: run_id, amis.TAG_OWNER: amis.owner(),
        temporary.TAG_STARTED_AT: datetime.now(UTC).isoformat(timespec="seconds")})
    return copy_id


def _wait_available(ec2: EC2Client, copy_id: str, image: Image, timeout_min: float,
                    progress: ProgressFn, subject: str, cancel: Cancel) -> Image:
    """Until the copy is available, with our own deadline (boto3's image_available
    waiter gives up after 10 minutes; big cross-region copies take longer)."""
    waited_from = time.monotonic()
    last_state = ""

    def available() -> Image | None:
        nonlocal last_state
        found = amis.images_by_id(ec2, [copy_id]).get(copy_id)
        state = found.state if found is not None else "missing"
        if state != last_state:
            progress(subject, f"{copy_id} is {state}")
            last_state = state
        if found is not None and state == "available":
            return found
        # EC2 may not know a new copy for a few seconds (eventual consistency).
        gone = state == "missing" and time.monotonic() - waited_from > _UNKNOWN_GRACE_S
        if gone or state in ("failed", "error", "invalid", "deregistered"):
            raise PromotionFailed(f"the copy {copy_id} of {image.id} ended {state}"
                                  + _state_reason(ec2, copy_id))
        return None

    try:
        return poll_until(available, timeout_s=timeout_min * 60, cancel=cancel,
                          interval_s=Growing(_FIRST_POLL_S, factor=2, longest_s=_MAX_POLL_S),
                          what=f"copying {image.id}")
    except TimedOut as exc:
        raise PromotionFailed(f"the copy {copy_id} of {image.id} is still {last_state} after "
                              f"{timeout_min:g} minutes; it was stopped (run again to "
                              "retry, with a longer timeout)") from exc


def _state_reason(ec2: EC2Client, copy_id: str) -> str:
    try:
        with translate(f"reading why {copy_id} failed"):
            raw = ec2.describe_images(ImageIds=[copy_id])["Images"]
    except AwsError:
        return ""
    reason = raw[0].get("StateReason", {}) if raw else {}
    return f": {reason.get('Code', '')}: {reason.get('Message', '')}" if reason else ""


def _copy_tags(target: ResolvedVars, image: Image, lineage: str, name: str) -> dict[str, str]:
    """The source's lineage (fingerprint, source AMI, build) for the target env."""
    tags = {k: v for k, v in image.tags.items()
            if k.startswith("builder:") and k not in _NOT_INHERITED
            and not k.startswith((amis.TAG_VERIFIED_PREFIX, sharing.SHARING_TAG_PREFIX))}
    tags.update({"Name": name, amis.TAG_ENV: target.combo.env,
                 amis.TAG_STATUS: amis.AmiStatus.BAKED, amis.TAG_PROMOTED_FROM: lineage})
    return tags


def _discard(ec2: EC2Client, image_id: str) -> None:
    """Remove a copy (a pending one stops) with its snapshots."""
    found = amis.images_by_id(ec2, [image_id]).get(image_id)
    if found is not None:
        amis.deregister(ec2, found)


def _lineage(source_env: str, image: Image) -> str:
    return f"{source_env}/{image.id}"
