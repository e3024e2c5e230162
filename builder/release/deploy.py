"""blue_green_copy: a CodeDeploy blue/green deployment that copies the group's current
Auto Scaling group at the new launch-template version; waiting for it with progress
(status, instance counts, the instances' lifecycle events), naming the lifecycle event
that failed it, reading back the replacement group, or pointing the group back.

The group's ASG is read from the deployment group every time: each successful
blue/green deployment replaces it with a copy of another name. The CodeDeploy parts
(checking the group's kind, waiting, stopping) serve the other CodeDeploy strategy too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from builder.aws import codedeploy, fleet, images
from builder.aws.codedeploy import Deployment, DeploymentGroup, FailedEvent, Target
from builder.aws.fleet import AsgLaunch, TemplateVersion
from builder.config.models import DeployStrategy
from builder.errors import AwsError, Interrupted, OperationFailed, RefusedError, TimedOut
from builder.interrupts import Cancel
from builder.output import ProgressFn
from builder.polling import Growing, poll_until
from builder.release import rollout
from builder.release.rollout import DeployTarget, Ended, Run

if TYPE_CHECKING:
    from mypy_boto3_codedeploy.type_defs import RevisionLocationTypeDef

    from builder.aws.images import Image

# Status polls back off from the first delay to the longest, and start over when
# something changes (so a state change is reported promptly).
POLL_FIRST_S = 0.25
POLL_LONGEST_S = 10.0
# After a timeout: how long CodeDeploy gets to confirm the stop.
STOP_WAIT_S = 300.0
_MISSING_GROUP = ("DeploymentGroupDoesNotExistException", "ApplicationDoesNotExistException")
# What a wait calls on every poll (their number depends on how long CodeDeploy takes):
# the deployment's status, and at most one of the lifecycle reads.
STATUS_POLLS = ("codedeploy.GetDeployment", "codedeploy.ListDeploymentTargets",
                "codedeploy.BatchGetDeploymentTargets")


def current_group(target: DeployTarget) -> DeploymentGroup:
    """The comp's deployment group as it is now."""
    settings = target.resolved.settings
    return codedeploy.group(target.codedeploy, settings.codedeploy_application,
                            settings.codedeploy_deployment_group)


def deployment_group(target: DeployTarget, strategy: DeployStrategy) -> DeploymentGroup:
    """The comp's deployment group as it is now; refused (exit 2, naming the strategy
    that fits) unless it is the kind `strategy` drives."""
    settings = target.resolved.settings
    group = existing_group(target)
    if group is None:
        raise target.resolved.problem(
            "codedeploy_deployment_group",
            f"{settings.codedeploy_application}/{settings.codedeploy_deployment_group} not "
            f"found in {target.where}")
    return fitting(target, group, strategy)


def existing_group(target: DeployTarget) -> DeploymentGroup | None:
    """The comp's deployment group as it is now; None when there is none."""
    try:
        return current_group(target)
    except AwsError as exc:
        if exc.code in _MISSING_GROUP:
            return None
        raise


def fitting(target: DeployTarget, group: DeploymentGroup,
            strategy: DeployStrategy) -> DeploymentGroup:
    """`group`, refused (exit 2, naming the strategy that fits) unless it is the kind
    `strategy` drives."""
    fits = fitting_strategy(group)
    if fits != strategy:
        raise target.resolved.problem(
            "deploy_strategy",
            f"{strategy} needs {_NEEDS[strategy]}, but {group.application}/{group.name} is "
            f"{_KIND[fits]}: set deploy_strategy: {fits}")
    return group


def fitting_strategy(group: DeploymentGroup) -> DeployStrategy:
    """The strategy a deployment group's configuration calls for."""
    if group.deployment_type != "BLUE_GREEN":
        return DeployStrategy.INSTANCE_REFRESH
    if group.copies_asg:
        return DeployStrategy.BLUE_GREEN_COPY
    return DeployStrategy.BLUE_GREEN_EXISTING


_KIND = {
    DeployStrategy.BLUE_GREEN_COPY: "a blue/green group that copies its Auto Scaling group",
    DeployStrategy.BLUE_GREEN_EXISTING: "a blue/green group over existing Auto Scaling "
                                        "groups (DISCOVER_EXISTING)",
    DeployStrategy.INSTANCE_REFRESH: "an in-place group",
}
_NEEDS = {
    DeployStrategy.BLUE_GREEN_COPY: "a blue/green group that copies its Auto Scaling "
                                    "group (COPY_AUTO_SCALING_GROUP)",
    DeployStrategy.BLUE_GREEN_EXISTING: "a blue/green group with DISCOVER_EXISTING",
    DeployStrategy.INSTANCE_REFRESH: "an in-place group (or none)",
}


def _asg_of(target: DeployTarget, name: str, template: TemplateVersion) -> AsgLaunch:
    """An ASG of the fleet, which must launch from the comp's launch template."""
    asg = fleet.asg_launch(target.autoscaling, name)
    if asg.template_id != template.template_id:
        raise target.resolved.problem(
            "launch_template_name",
            f"the deployment group's Auto Scaling group {asg.name} launches from "
            f"{asg.template_id or 'no launch template'}, not {template.template_name} "
            f"({template.template_id})")
    return asg


class CopyAsg:
    """blue_green_copy: CodeDeploy copies the group's one ASG at the new version (the
    copy gets a new name), moves traffic, and removes the original."""

    strategy: ClassVar[DeployStrategy] = DeployStrategy.BLUE_GREEN_COPY
    noun: ClassVar[str] = "deployment"

    def __init__(self, target: DeployTarget, revision: RevisionLocationTypeDef | None):
        self.target = target
        self._wanted = revision  # --revision, else the group's current target revision
        self._revision: RevisionLocationTypeDef | None = revision
        self._group: DeploymentGroup | None = None

    @property
    def revision(self) -> str | None:
        return codedeploy.revision_text(self._revision) if self._revision else None

    def prepare(self, default: TemplateVersion) -> AsgLaunch:
        group = self._read_group()
        if len(group.asg_names) != 1:
            raise RefusedError(f"{group.application}/{group.name} names "
                               f"{len(group.asg_names)} Auto Scaling groups; a blue/green "
                               "copy needs exactly one")
        return _asg_of(self.target, group.asg_names[0], default)

    def _read_group(self) -> DeploymentGroup:
        """The group (refused unless it is the strategy's kind) and the revision to
        deploy: --revision, else the group's current one."""
        group = self._group = deployment_group(self.target, self.strategy)
        self._revision = self._wanted or group.target_revision
        if self._revision is None:
            raise RefusedError(f"{self.target.subject}: {group.name} has never deployed a "
                               "revision; give --revision s3://BUCKET/KEY")
        return group

    def earlier(self, image: Image) -> Run | None:
        assert self._group is not None
        found = _running(self.target, self._group, image)
        if found is None and self._wanted is None:
            found = _ended_unseen(self.target, self._group, image)
        return _run(found) if found else None

    def start(self, asg: AsgLaunch, new: TemplateVersion, description: str) -> Run:
        """Point the group's ASG at `new` (CodeDeploy copies it with that version) and
        create the deployment; the ASG goes back if CodeDeploy refuses."""
        assert self._group is not None and self._revision is not None
        deployment_id = create(self.target, self._group, asg, new, self._revision,
                               description)
        return Run(deployment_id, "Created")

    def wait(self, run_id: str, *, timeout_s: float, progress: ProgressFn,
             cancel: Cancel) -> Ended:
        return wait(self.target, run_id, timeout_s=timeout_s, progress=progress,
                    cancel=cancel)

    def launched(self, new: TemplateVersion) -> tuple[str, str]:
        return replacement(self.target, new)

    def roll_back(self, new: TemplateVersion, back: str | None) -> tuple[str, list[str]]:
        return roll_back(self.target, new, back)


def _run(deployment: Deployment) -> Run:
    return Run(deployment.id, deployment.status, done=deployment.done,
               succeeded=deployment.status == codedeploy.SUCCEEDED, error=deployment.error)


def _running(target: DeployTarget, group: DeploymentGroup, image: Image) -> Deployment | None:
    """The group's active deployment, when it is a release of this AMI (the group
    allows one at a time: any other one is in the way)."""
    ids = codedeploy.active(target.codedeploy, group.application, group.name)
    if not ids:
        return None
    running = codedeploy.get(target.codedeploy, ids[0])
    if not running.description.startswith(rollout.description(image.id)):
        raise OperationFailed(f"{target.subject}: {group.name} is busy with deployment "
                              f"{running.id} ({running.status}), not a release of "
                              f"{image.id}; release again when it ends")
    return running


def _ended_unseen(target: DeployTarget, group: DeploymentGroup,
                  image: Image) -> Deployment | None:
    """The group's last deployment, when it was a release of this AMI that ended
    without its release watching (interrupted, --no-wait): its outcome is followed up
    (verified, or rolled back) instead of deploying again. A failure a release saw and
    rolled back (the AMI is tagged failed) is not followed again: the AMI is deployed
    anew."""
    if not group.last_attempted:
        return None
    last = codedeploy.get(target.codedeploy, group.last_attempted)
    if not last.description.startswith(rollout.description(image.id)):
        return None
    seen = last.status != codedeploy.SUCCEEDED and image.status == images.AmiStatus.FAILED
    return None if seen else last


def create(target: DeployTarget, group: DeploymentGroup, asg: AsgLaunch, new: TemplateVersion,
           revision: RevisionLocationTypeDef, description: str) -> str:
    """Point `asg` at `new` and create the group's deployment; the ASG goes back if
    CodeDeploy refuses."""
    moved = asg.version != str(new.number)
    if moved:
        fleet.point_asg(target.autoscaling, asg.name, new.template_id, str(new.number))
    try:
        return start_deployment(target, group, revision, description)
    except OperationFailed:
        if moved:
            fleet.point_asg(target.autoscaling, asg.name, asg.template_id, asg.version)
        raise


def start_deployment(target: DeployTarget, group: DeploymentGroup,
                     revision: RevisionLocationTypeDef, description: str,
                     onto_asgs: Sequence[str] = ()) -> str:
    """Create the group's deployment (onto these ASGs, for DISCOVER_EXISTING); a group
    busy with another one is said so."""
    try:
        return codedeploy.create(target.codedeploy, group, revision, description, onto_asgs)
    except AwsError as exc:
        if exc.code == "DeploymentLimitExceededException":
            raise OperationFailed(f"{target.subject}: {group.name} is busy: {exc.message}; "
                                  "release again when it ends") from exc
        raise


def wait(target: DeployTarget, deployment_id: str, *, timeout_s: float, progress: ProgressFn,
         cancel: Cancel) -> Ended:
    """Poll until the deployment ends, reporting status, instance counts and lifecycle
    events; on timeout stop it (with rollback). Ctrl-C raises Interrupted and leaves it
    running. A deployment that didn't succeed comes with its failed lifecycle event."""
    lifecycle = _LifecycleWatch(target, deployment_id, progress)
    seen = ("", "", "")
    interval = intervals()

    def ended() -> Deployment | None:
        nonlocal seen
        state = codedeploy.get(target.codedeploy, deployment_id)
        events = lifecycle.poll() if state.status == "InProgress" else ""
        if (state.status, state.instances, events) != seen:
            seen = (state.status, state.instances, events)
            interval.reset()
            progress(target.subject, f"deployment {deployment_id}: {state.status}"
                     + (f" (instances: {state.instances})" if state.instances else "")
                     + (f"; lifecycle: {events}" if events else ""))
        return state if state.done else None

    try:
        state = poll_until(ended, timeout_s=timeout_s, interval_s=interval,
                           cancel=cancel, what=f"deployment {deployment_id}")
    except TimedOut:
        stopped = _stop(target, deployment_id, progress)
        return Ended(_run(stopped), timed_out=True,
                     failed_event=_failed_event(target, stopped, progress))
    except Interrupted:
        progress(target.subject, f"stopped waiting; deployment {deployment_id} goes on. "
                 "Run the same release again to follow it to the end (verify or roll back)")
        raise
    return Ended(_run(state), timed_out=False,
                 failed_event=_failed_event(target, state, progress))


def intervals() -> Growing:
    """Polls of a deployment: soon after news, then further apart."""
    return Growing(POLL_FIRST_S, factor=1.5, longest_s=POLL_LONGEST_S)


class _LifecycleWatch:
    """The instances' lifecycle events for the progress line, one call per poll at most:
    the deployment's instance ids while none of those known runs an event (CodeDeploy
    adds the replacement instances as it launches them), else the events of the first 25
    (one BatchGetDeploymentTargets call). Lifecycle reads are extras: one refused (say
    the role may not list targets) turns the watch off and the wait goes on."""

    def __init__(self, target: DeployTarget, deployment_id: str, progress: ProgressFn):
        self._target = target
        self._deployment_id = deployment_id
        self._progress = progress
        self._ids: list[str] = []
        self._listed = False  # the last poll listed the ids: read their events next
        self._running = False
        self._summary = ""
        self._off = False

    def poll(self) -> str:
        """One call's worth of news; the summary as last read (e.g. "1 Green at Install,
        1 Blue pending")."""
        if self._off:
            return ""
        client, deployment_id = self._target.codedeploy, self._deployment_id
        try:
            if self._ids and (self._running or self._listed):
                found = codedeploy.targets(client, deployment_id, self._ids)
                self._running = any(t.running_event is not None for t in found)
                self._summary = _lifecycle_text(found)
                self._listed = False
            else:
                self._ids = codedeploy.target_ids(client, deployment_id)
                self._listed = True
        except AwsError as exc:
            self._off = True
            self._progress(self._target.subject, f"not following lifecycle events: {exc}")
        return self._summary


def _lifecycle_text(found: Sequence[Target]) -> str:
    counts: dict[str, int] = {}
    for target in found:
        key = f"{target.label} {target.step}".strip()
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {key}" for key, n in counts.items())


def _failed_event(target: DeployTarget, state: Deployment,
                  progress: ProgressFn) -> FailedEvent | None:
    """The lifecycle event that failed the deployment, when CodeDeploy names one; not
    being able to read it doesn't stop the rollback."""
    if state.status == codedeploy.SUCCEEDED:
        return None
    try:
        return codedeploy.failed_event(target.codedeploy, state.id)
    except AwsError as exc:
        progress(target.subject, f"could not read the failed lifecycle event: {exc}")
        return None


def _stop(target: DeployTarget, deployment_id: str, progress: ProgressFn) -> Deployment:
    progress(target.subject, f"timed out: stopping deployment {deployment_id}")
    codedeploy.stop(target.codedeploy, deployment_id)

    def ended() -> Deployment | None:
        state = codedeploy.get(target.codedeploy, deployment_id)
        return state if state.done else None

    try:
        return poll_until(ended, timeout_s=STOP_WAIT_S, interval_s=intervals(),
                          what=f"stopping deployment {deployment_id}")
    except TimedOut:  # the caller says how it stands
        return codedeploy.get(target.codedeploy, deployment_id)


def replacement(target: DeployTarget, new: TemplateVersion) -> tuple[str, str]:
    """After a successful deployment: the group's (new) ASG and the AMI it launches."""
    group = current_group(target)
    if len(group.asg_names) != 1:
        return ", ".join(group.asg_names), ""
    asg = fleet.asg_launch(target.autoscaling, group.asg_names[0])
    return asg.name, launched_image(target, asg, new)


def launched_image(target: DeployTarget, asg: AsgLaunch, new: TemplateVersion) -> str:
    """The AMI `asg` launches ("" when it launches from another template)."""
    if asg.template_id != new.template_id:
        return ""
    if asg.version == str(new.number):
        return new.image_id
    # "$Default", "$Latest" or another number: ask what it stands for now.
    return fleet.version(target.ec2, template_id=asg.template_id, number=asg.version).image_id


def roll_back(target: DeployTarget, new: TemplateVersion,
              back: str | None) -> tuple[str, list[str]]:
    """The group's current ASG (the original, after a failed blue/green deployment) off
    `new`, to version `back`. Returns the group's ASG and what was done."""
    done = []
    group = current_group(target)
    for name in group.asg_names:
        asg = fleet.asg_launch(target.autoscaling, name)
        on_new = asg.template_id == new.template_id and asg.version == str(new.number)
        if on_new and back and back != asg.version:
            fleet.point_asg(target.autoscaling, name, asg.template_id, back)
            done.append(f"Auto Scaling group {name} back to version {back}")
    return ", ".join(group.asg_names), done
