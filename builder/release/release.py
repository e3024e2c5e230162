"""Release: an AMI onto its (app, env, comp)'s launch template and, by the env's
`deploy_strategy`, onto its fleet; verified there, or rolled back.

    lock ─> AMI ─> launch template: a version copied from $Default with the new
    ImageId, made the default ─> rollout (a Rollout per strategy: CodeDeploy copies
    the ASG, ...) ─> wait ─> read back what the fleet launches ─> verified
       └─ failed, stopped, timed out, not verified ─> default and fleet back, AMI failed

What a re-run needs is kept in AWS, not on this machine: the new version's description
names the previous default (and the ASG's earlier version), the rollout's names the
AMI. So a re-run after an interrupt (or --no-wait) finds the default already on the AMI
and follows that rollout to its end (in progress, or ended unseen), or rolls out what
the template already holds. Ctrl-C is honoured before anything changes and while
waiting; the few calls from the new version to the started rollout run through.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from builder import private, records
from builder.aws import codedeploy, fleet, images
from builder.aws.calls import runs
from builder.aws.fleet import AsgLaunch, TemplateVersion
from builder.aws.parameters import Publication
from builder.config.models import Combo, DeployStrategy
from builder.errors import (
    AwsError,
    BuilderError,
    DeployFailed,
    InputError,
    Interrupted,
    RefusedError,
)
from builder.interrupts import Cancel
from builder.output import ProgressFn, silent
from builder.project import Project
from builder.release import deploy, existing, lock, publish, refresh, rollout
from builder.release.rollout import DeployTarget, Rollout, Run

if TYPE_CHECKING:
    from mypy_boto3_codedeploy.type_defs import RevisionLocationTypeDef

# The lock outlives the longest wait by this much; without a wait it is held this long.
LOCK_MARGIN_MIN = 15.0

# How each deploy_strategy reaches the fleet (none has no Rollout: the launch template
# only).
STRATEGIES: dict[DeployStrategy, Callable[[DeployTarget, RevisionLocationTypeDef | None],
                                          Rollout]] = {
    DeployStrategy.BLUE_GREEN_COPY: deploy.CopyAsg,
    DeployStrategy.BLUE_GREEN_EXISTING: existing.ExistingPair,
    DeployStrategy.INSTANCE_REFRESH: refresh.InstanceRefresh,
}


class ReleaseOutcome(StrEnum):
    """How a release ended (`outcome` in its result, its JSON and its record)."""

    VERIFIED = "verified"  # deployed, and the new ASG launches the AMI
    RELEASED = "released"  # --no-deploy: launch template only
    DEPLOYING = "deploying"  # --no-wait: the deployment goes on without us
    UNCHANGED = "unchanged"  # the group already runs this verified AMI
    FAILED = "failed"  # rolled back (records only: the caller gets DeployFailed)
    INTERRUPTED = "interrupted"  # Ctrl-C while waiting (records only)


@dataclass(frozen=True)
class ReleaseResult:
    """What one release did; also its record under .builder/releases/."""

    combo: Combo
    account: str
    region: str
    outcome: ReleaseOutcome
    ami_id: str
    ami_name: str
    launch_template_id: str
    launch_template_name: str
    new_version: int  # the default after the release
    previous_version: int | None  # the default before it (None: no builder version to go back to)
    version_created: bool
    strategy: DeployStrategy = DeployStrategy.BLUE_GREEN_COPY  # none: no rollout
    deployment_id: str | None = None  # the rollout's id (a deployment, a refresh, ...)
    deployment_status: str | None = None
    attached: bool = False  # followed a deployment an earlier run had started
    revision: str | None = None
    asg_before: str | None = None
    asg_after: str | None = None
    error: str = ""
    failed_lifecycle_event: Mapping[str, str] | None = None  # target, event, error_code, ...
    checkpoints: tuple[int, ...] = ()  # an instance refresh's checkpoints reached (percent)
    timings: Mapping[str, float] = field(default_factory=dict)  # seconds since the start
    record: Path | None = None
    protected: bool = False  # this release turned the AMI's deregistration protection on
    publication: Publication | None = None  # ami_ssm_parameter, set on a verified release
    changes: records.Changes | None = None  # vs the AMI the launch template launched

    exit_code = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.combo.app, "env": self.combo.env, "comp": self.combo.comp,
            "account": self.account, "region": self.region, "outcome": self.outcome,
            "ami_id": self.ami_id, "ami_name": self.ami_name,
            "launch_template_id": self.launch_template_id,
            "launch_template_name": self.launch_template_name,
            "new_version": self.new_version, "previous_version": self.previous_version,
            "version_created": self.version_created, "strategy": self.strategy,
            "deployment_id": self.deployment_id, "deployment_status": self.deployment_status,
            "attached": self.attached, "revision": self.revision,
            "asg_before": self.asg_before, "asg_after": self.asg_after, "error": self.error,
            "failed_lifecycle_event": (dict(self.failed_lifecycle_event)
                                       if self.failed_lifecycle_event else None),
            "checkpoints": list(self.checkpoints),
            "timings": dict(self.timings),
            "record": str(self.record) if self.record else None,
            "protected": self.protected,
            "ssm_parameter": self.publication.to_json() if self.publication else None,
            "changes": self.changes.to_json() if self.changes else None,
        }

    def to_text(self) -> str:
        head = {
            ReleaseOutcome.VERIFIED: f"released {self.ami_id}: deployed and verified",
            ReleaseOutcome.RELEASED: f"released {self.ami_id} to the launch template only "
                              "(--no-deploy, or deploy_strategy: none)",
            ReleaseOutcome.DEPLOYING: f"released {self.ami_id}: deployment {self.deployment_id} "
                               "started, not waited for (--no-wait)",
            ReleaseOutcome.UNCHANGED: f"{self.ami_id} is already released and verified here; "
                               "nothing to do",
        }.get(self.outcome, f"{self.outcome} {self.ami_id}")
        lines = [f"{self.combo}: {head}",
                 f"  AMI: {self.ami_id} {self.ami_name} ({self.account} {self.region})"]
        lines.append(f"  launch template {self.launch_template_name} "
                     f"({self.launch_template_id}): default version {self.new_version} "
                     + (f"(was {self.previous_version})" if self.version_created
                        else "already has this AMI"))
        if self.deployment_id:
            lines.append(f"  deployment {self.deployment_id}: {self.deployment_status}"
                         + (" (attached to the earlier run's deployment)" if self.attached
                            else "") + (f", revision {self.revision}" if self.revision else ""))
        if self.checkpoints:
            lines.append("  checkpoints reached: " + ", ".join(f"{p}%" for p in self.checkpoints))
        if self.asg_after and self.asg_after != self.asg_before:
            lines.append(f"  Auto Scaling group: {self.asg_before} -> {self.asg_after} "
                         + ("(new name)" if self.strategy == DeployStrategy.BLUE_GREEN_COPY
                            else "(the other of the pair, serving now)"))
        elif self.asg_after or self.asg_before:
            lines.append(f"  Auto Scaling group: {self.asg_after or self.asg_before}")
        if self.protected:
            lines.append(f"  {self.ami_id}: deregistration protection on")
        if self.publication:
            lines.append(f"  {self.publication.to_text()}")
        if self.error:
            lines.append(f"  error: {self.error}")
        if self.timings:
            lines.append("  seconds from the start: " + ", ".join(
                f"{name} {seconds:.1f}" for name, seconds in self.timings.items()))
        if self.record:
            lines.append(f"  record: {self.record}")
        if self.changes:
            lines.extend(f"  {line}" for line in self.changes.lines())
        return "\n".join(lines)


@runs("release")
def release(project: Project, combo: Combo, *, ami_id: str | None = None,
            revision: str | None = None, deploy: bool = True, wait: bool = True,
            timeout_min: float = 30.0, break_lock: bool = False, lock_wait_s: float = 0,
            lock_held: bool = False, region: str | None = None, progress: ProgressFn = silent,
            cancel: Cancel | None = None) -> ReleaseResult:
    """Release `ami_id` (default: the newest baked, released or verified AMI of the combo
    in its env's account) and deploy it blue/green, under the combo's release lock.

    revision: s3://bucket/key to deploy instead of the group's current target revision.
    deploy False: the launch template only (AMI tagged released). wait False: return once
    the deployment is created (the lock goes with it; a later release of the same AMI
    attaches and finishes). lock_held: the caller (promote) holds the combo's lock.
    region: one region of a multi-region env (default: the bake region); the lock is that
    region's (builder.release.regions releases in every region).
    Raises RefusedError (the AMI), LockedError, DeployFailed (rolled back), Interrupted
    (Ctrl-C while waiting: the deployment goes on).
    """
    if timeout_min <= 0:
        raise InputError(f"--timeout {timeout_min:g}: give minutes, more than 0")
    wanted_revision = codedeploy.s3_revision(revision) if revision else None
    if wanted_revision is not None and not deploy:
        raise InputError("--revision needs a deployment: drop --no-deploy")
    cancel = cancel or Cancel()
    cancel.raise_if_set()
    run = _Release(project, combo, _Options(ami_id, wanted_revision, deploy, wait,
                                            timeout_min), progress, cancel, region)
    # The AMI and the launch template are accepted (or refused) before anything is
    # written, the lock included; run() reads the template's default again under it.
    run.image = run._choose_image()
    run.changes = records.against_running(project, run.env_aws,
                                          run._default_version().image_id, run.image)
    if lock_held:
        return run.run()
    lease = timeout_min + LOCK_MARGIN_MIN if deploy and wait else LOCK_MARGIN_MIN
    with lock.held(run.env_aws, combo, minutes=lease, break_lock=break_lock,
                   progress=run.progress, wait_s=lock_wait_s, cancel=cancel):
        run.mark("lock")
        return run.run()


@dataclass(frozen=True)
class _Options:
    ami_id: str | None
    revision: RevisionLocationTypeDef | None
    deploy: bool
    wait: bool
    timeout_min: float


class _Release:
    """One release; its fields fill in as it goes (what the record tells)."""

    def __init__(self, project: Project, combo: Combo, options: _Options, progress: ProgressFn,
                 cancel: Cancel, region: str | None = None):
        self.project = project
        self.combo = combo
        self.options = options
        self.progress = progress
        self.cancel = cancel
        resolved = project.resolve(combo.app, combo.env, combo.comp)
        if region is not None:
            resolved = resolved.in_region(region)
        self.subject = str(combo) + (f" {resolved.settings.aws_region}"
                                     if len(resolved.settings.aws_regions) > 1
                                     else "")
        self.settings = resolved.settings
        self.env_aws = project.env_aws(resolved)
        self.target = DeployTarget.of(project, resolved)
        self.strategy = self.settings.deploy_strategy
        self.rollout: Rollout | None = None
        if options.deploy and self.strategy != DeployStrategy.NONE:
            self.rollout = STRATEGIES[self.strategy](self.target, options.revision)
        elif options.revision is not None:
            raise InputError(f"--revision needs a rollout, but deploy_strategy is "
                             f"{self.strategy} for {combo}")
        self.started = time.monotonic()
        self.started_at = datetime.now(UTC)
        self.timings: dict[str, float] = {}
        self.image: images.Image | None = None
        self.new: TemplateVersion | None = None
        self.previous: int | None = None
        self.asg_version_before: str | None = None
        self.version_created = False
        self.run_state: Run | None = None
        self.attached = False
        self.asg_before: str | None = None
        self.asg_after: str | None = None
        self.failed_event: codedeploy.FailedEvent | None = None
        self.protected = False
        self.publication: Publication | None = None
        self.changes: records.Changes | None = None

    def mark(self, name: str) -> None:
        self.timings[name] = round(time.monotonic() - self.started, 3)

    # -- the steps -----------------------------------------------------------------
    def run(self) -> ReleaseResult:
        image = self.image = self.image or self._choose_image()
        default = self._default_version()
        rollout_, asg = self.rollout, None
        if rollout_ is not None:
            asg = rollout_.prepare(default)
            self.asg_before = asg.name
        self.cancel.raise_if_set()  # the last point where nothing has changed
        new = self._launch_template(image, default, asg)
        self.mark("launch_template")
        if rollout_ is None or asg is None:
            if image.status == images.AmiStatus.BAKED:
                images.set_tags(self.target.ec2, image, {images.TAG_STATUS:
                                                         images.AmiStatus.RELEASED})
            return self._finish(ReleaseOutcome.RELEASED)
        earlier = None
        if not self.version_created:  # the default had the AMI: an earlier run's work?
            earlier = rollout_.earlier(image)
            if (earlier is None or earlier.done) and self._runs_verified(image, asg, new):
                self.asg_after = asg.name
                return self._finish(ReleaseOutcome.UNCHANGED)
        if earlier is not None:
            self.run_state, self.attached = earlier, True
            self.progress(self.subject, f"following {rollout_.noun} {earlier.id} "
                                        f"({earlier.status}) an earlier run started")
        else:
            self.run_state = self._start(rollout_, asg, new, image)
            self.progress(self.subject, f"created {rollout_.noun} {self.run_state.id}"
                          + (f" ({rollout_.revision})" if rollout_.revision else ""))
        self.mark("deployment_created")
        if not self.options.wait:
            return self._finish(ReleaseOutcome.DEPLOYING)
        return self._follow(rollout_, image, new, self.run_state.id)

    def _choose_image(self) -> images.Image:
        ec2, where = self.target.ec2, self.target.where
        if self.options.ami_id is None:
            usable = [image for image in images.images_of(ec2, self.combo)
                      if image.status in images.USABLE_STATUSES]
            if not usable:
                raise RefusedError(f"{self.subject}: no available baked, released or verified "
                                   f"AMI in {where}; bake one first (builder bake "
                                   f"{self.combo.app} {self.combo.env} {self.combo.comp})")
            self.progress(self.subject, f"newest usable AMI: {usable[0].id} "
                                        f"({usable[0].name}, {usable[0].status})")
            return usable[0]
        ami_id = self.options.ami_id
        try:
            found = images.describe(ec2, image_ids=[ami_id])
        except AwsError as exc:
            if not exc.code.startswith("InvalidAMIID"):
                raise
            found = []
        if not found:
            raise RefusedError(f"{self.subject}: {ami_id}: no such AMI in {where}")
        image = found[0]
        if image.status == images.AmiStatus.BUILDING:
            raise RefusedError(f"{self.subject}: {ami_id} is incomplete (builder:status="
                               f"{images.AmiStatus.BUILDING}): its bake or promotion has not "
                               "finished; `builder reap` removes it when that run is gone")
        if image.state != "available":
            raise RefusedError(f"{self.subject}: {ami_id} is {image.state or 'in no state'}, "
                               "not available")
        if not image.belongs_to(self.combo):
            tags = [image.tags.get(t, "") for t in (images.TAG_APP, images.TAG_ENV,
                                                     images.TAG_COMP)]
            if not any(tags):
                raise RefusedError(f"{self.subject}: {ami_id} has no builder:app/env/comp "
                                   "tags: not an AMI builder baked or promoted for it")
            raise RefusedError(f"{self.subject}: {ami_id} is tagged for "
                               f"{'/'.join(t or '?' for t in tags)}, not {self.combo} "
                               "(bake it for this env, or promote it here)")
        return image

    def _default_version(self) -> TemplateVersion:
        name = self.settings.launch_template_name
        try:
            return fleet.version(self.target.ec2, template_name=name)
        except AwsError as exc:
            if exc.code.startswith("InvalidLaunchTemplateName"):
                raise self.target.resolved.problem(
                    "launch_template_name", f"{name} not found in {self.target.where}") from exc
            raise

    def _launch_template(self, image: images.Image, default: TemplateVersion,
                         asg: AsgLaunch | None) -> TemplateVersion:
        """A new default version with the AMI, unless the default already has it."""
        if default.image_id == image.id:
            remembered = rollout.REMEMBERED.search(default.description) if default.description \
                .startswith(f"builder: {image.id} ") else None
            self.previous = int(remembered["previous"]) if remembered else None
            self.asg_version_before = (remembered["asg"] if remembered else None) or (
                asg.version if asg else None)
            self.progress(self.subject, f"launch template {default.template_name}: default "
                                        f"version {default.number} already has {image.id}")
            self.new = default
            return default
        self.previous = default.number
        self.asg_version_before = asg.version if asg else None
        self.protected = publish.protect(self.env_aws, self.settings, image)
        build = image.tags.get(images.TAG_BUILD_ID) or image.name
        description = f"builder: {image.id} ({build}); previous default {default.number}" + (
            f"; asg version {asg.version}" if asg else "")
        new = fleet.create_version(self.target.ec2, default, image.id, description)
        fleet.set_default(self.target.ec2, new.template_id, new.number)
        self.version_created = True
        self.new = new
        self.progress(self.subject, f"launch template {default.template_name}: default "
                                    f"version {new.number} (was {default.number})")
        return new

    def _runs_verified(self, image: images.Image, asg: AsgLaunch,
                       new: TemplateVersion) -> bool:
        """Nothing to do: the fleet launches the AMI, a release verified it in this env,
        and no other revision was asked for."""
        return (self.options.revision is None
                and images.verified_tag(self.combo.env) in image.tags
                and asg.template_id == new.template_id
                and asg.version in (str(new.number), "$Default"))

    def _start(self, rollout_: Rollout, asg: AsgLaunch, new: TemplateVersion,
               image: images.Image) -> Run:
        """The rollout; if it can't start, the default goes back too."""
        try:
            return rollout_.start(asg, new, f"{rollout.description(image.id)}(launch "
                                            f"template {new.template_name} version "
                                            f"{new.number})")
        except BuilderError:
            if self.version_created and self.previous is not None:
                fleet.set_default(self.target.ec2, new.template_id, self.previous)
                self.progress(self.subject, f"no {rollout_.noun}: launch template default "
                                            f"back to version {self.previous}")
            for done in publish.rolled_back(self.env_aws, self.settings, self.combo, image,
                                            unprotect=self.protected,
                                            template_id=new.template_id,
                                            previous=self.previous):
                self.progress(self.subject, f"no {rollout_.noun}: {done}")
            raise

    def _follow(self, rollout_: Rollout, image: images.Image, new: TemplateVersion,
                run_id: str) -> ReleaseResult:
        """Wait, verify, tag; or roll back."""
        try:
            ended = rollout_.wait(run_id, timeout_s=self.options.timeout_min * 60,
                                  progress=self.progress, cancel=self.cancel)
        except Interrupted:
            self._record(self._result(ReleaseOutcome.INTERRUPTED))
            raise
        self.run_state = state = ended.run
        self.failed_event = ended.failed_event
        self.mark("deployment_ended")
        lifecycle = f"; {ended.failed_event.text}" if ended.failed_event else ""
        if ended.timed_out:
            self._fail(f"{rollout_.noun} {run_id} timed out after "
                       f"{self.options.timeout_min:g} min and was stopped ({state.status}"
                       + (f": {state.error})" if state.error else ")") + lifecycle)
        if not state.succeeded:
            self._fail(f"{rollout_.noun} {run_id} {state.status}: "
                       f"{state.error or 'AWS gave no reason'}{lifecycle}")
        asg_name, launched = rollout_.launched(new)
        self.asg_after = asg_name
        if launched != image.id:
            self._fail(f"{rollout_.noun} {run_id} succeeded, but the Auto Scaling group "
                       f"{asg_name} launches {launched or 'another launch template'}, "
                       f"not {image.id}")
        images.set_tags(self.target.ec2, image, {
            images.TAG_STATUS: images.AmiStatus.VERIFIED,
            images.verified_tag(self.combo.env): datetime.now(UTC).isoformat(timespec="seconds"),
        })
        self.mark("verified")
        self.progress(self.subject, f"verified: {asg_name} launches {image.id}")
        return self._finish(ReleaseOutcome.VERIFIED)

    def _fail(self, reason: str) -> NoReturn:
        assert self.image is not None and self.new is not None
        self.progress(self.subject, f"{reason}; rolling back")
        assert self.rollout is not None
        done = []
        if self.previous is not None and self.previous != self.new.number:
            fleet.set_default(self.target.ec2, self.new.template_id, self.previous)
            done.append(f"launch template {self.new.template_name} default back to version "
                        f"{self.previous}")
        back = self.asg_version_before or (str(self.previous) if self.previous is not None
                                           else None)
        self.asg_after, undone = self.rollout.roll_back(self.new, back)
        done += undone
        if self.previous is None:
            done.append(f"launch template default stays at version {self.new.number} (no "
                        "earlier builder version to go back to)")
        done += publish.rolled_back(self.env_aws, self.settings, self.combo, self.image,
                                    unprotect=self.protected, template_id=self.new.template_id,
                                    previous=self.previous)
        images.set_tags(self.target.ec2, self.image, {images.TAG_STATUS: images.AmiStatus.FAILED})
        record = self._record(self._result(ReleaseOutcome.FAILED, error=reason))
        raise DeployFailed(f"{self.subject}: {reason}. Rolled back: "
                           f"{'; '.join(done) or 'nothing had changed'}; {self.image.id} "
                           f"tagged failed (record: {record})")

    # -- results -------------------------------------------------------------------
    def _result(self, outcome: ReleaseOutcome, *, error: str = "") -> ReleaseResult:
        assert self.image is not None and self.new is not None
        self.mark("total")
        return ReleaseResult(
            combo=self.combo, account=self.settings.aws_account_id,
            region=self.settings.aws_region, outcome=outcome, ami_id=self.image.id,
            ami_name=self.image.name, launch_template_id=self.new.template_id,
            launch_template_name=self.new.template_name, new_version=self.new.number,
            previous_version=self.previous, version_created=self.version_created,
            strategy=self.strategy if self.rollout else DeployStrategy.NONE,
            deployment_id=self.run_state.id if self.run_state else None,
            deployment_status=self.run_state.status if self.run_state else None,
            attached=self.attached,
            revision=self.rollout.revision if self.rollout else None,
            asg_before=self.asg_before, asg_after=self.asg_after, error=error,
            failed_lifecycle_event=self.failed_event.to_json() if self.failed_event else None,
            checkpoints=self.run_state.checkpoints if self.run_state else (),
            timings=dict(self.timings), protected=self.protected, publication=self.publication,
            changes=self.changes)

    def _finish(self, outcome: ReleaseOutcome) -> ReleaseResult:
        if outcome in (ReleaseOutcome.VERIFIED, ReleaseOutcome.UNCHANGED):
            assert self.image is not None
            self.publication = publish.verified(self.env_aws, self.settings, self.image)
        result = self._result(outcome)
        return replace(result, record=self._record(result))

    def _record(self, result: ReleaseResult) -> Path:
        """<root>/.builder/releases/<app>/<env>/<comp>/<UTC time>-<deployment or AMI>.json"""
        folder = (self.project.layout.state_dir / "releases" / self.combo.app /
                  self.combo.env / self.combo.comp)
        private.make_folders(folder)
        path = folder / (f"{self.started_at:%Y%m%dT%H%M%SZ}-"
                         f"{result.deployment_id or result.ami_id}.json")
        document = replace(result, record=path).to_json()
        text = json.dumps(document, indent=2) + "\n"
        private.write_text(path, text)
        bucket = self.settings.records_bucket
        if bucket:
            try:  # the local record is written; a failed copy must not hide the outcome
                records.upload_release(self.env_aws, bucket, self.combo, result.ami_id,
                                       path.name, text)
            except BuilderError as exc:
                self.progress(self.subject, f"release record not kept in s3://{bucket}: "
                                            f"{exc.message}")
        return path


# -- bake --release ------------------------------------------------------------------
