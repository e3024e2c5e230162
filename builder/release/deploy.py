"""CodeDeploy blue/green for a release: start a deployment that copies the group's
current Auto Scaling group at the new launch-template version, wait for it with
progress (status, instance counts, the instances' lifecycle events), name the lifecycle
event that failed it, verify the replacement group, or roll the launch template and
group back.

The group's ASG is read from the deployment group every time: each successful
blue/green deployment replaces it with a copy of another name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from builder.aws import codedeploy, fleet
from builder.aws.codedeploy import Deployment, DeploymentGroup, FailedEvent, Target
from builder.aws.fleet import AsgLaunch, TemplateVersion
from builder.config.layers import ResolvedVars
from builder.errors import AwsError, Interrupted, OperationFailed, RefusedError, TimedOut
from builder.interrupts import Cancel
from builder.output import ProgressFn
from builder.polling import Growing, poll_until
from builder.project import Project

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_codedeploy import CodeDeployClient
    from mypy_boto3_codedeploy.type_defs import RevisionLocationTypeDef
    from mypy_boto3_ec2 import EC2Client

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


@dataclass(frozen=True)
class DeployTarget:
    """One combo's release target: its env's clients and the names its settings give."""

    resolved: ResolvedVars
    ec2: EC2Client
    autoscaling: AutoScalingClient
    codedeploy: CodeDeployClient

    @classmethod
    def of(cls, project: Project, resolved: ResolvedVars) -> DeployTarget:
        env_aws = project.env_aws(resolved)
        return cls(resolved, env_aws.client("ec2"), env_aws.client("autoscaling"),
                   env_aws.client("codedeploy"))

    @property
    def subject(self) -> str:
        return str(self.resolved.combo)

    @property
    def where(self) -> str:
        settings = self.resolved.settings
        return f"{settings.aws_account_id} {settings.aws_region}"


@dataclass(frozen=True)
class Waited:
    """How waiting for a deployment ended: the deployment, a timeout, the failed event."""

    deployment: Deployment
    timed_out: bool
    failed_event: FailedEvent | None = None  # of a deployment that didn't succeed


def _group(target: DeployTarget) -> DeploymentGroup:
    """The comp's deployment group as it is now."""
    settings = target.resolved.settings
    return codedeploy.group(target.codedeploy, settings.codedeploy_application,
                            settings.codedeploy_deployment_group)


def deployment_group(target: DeployTarget) -> DeploymentGroup:
    """The comp's blue/green group as it is now; refused unless it copies one ASG."""
    settings = target.resolved.settings
    application, name = settings.codedeploy_application, settings.codedeploy_deployment_group
    try:
        group = _group(target)
    except AwsError as exc:
        if exc.code in _MISSING_GROUP:
            raise target.resolved.problem(
                "codedeploy_deployment_group",
                f"{application}/{name} not found in {target.where}") from exc
        raise
    if not group.copies_asg:
        raise target.resolved.problem(
            "codedeploy_deployment_group",
            f"{application}/{name} is not a blue/green group that copies its Auto Scaling "
            "group (COPY_AUTO_SCALING_GROUP); release needs one")
    if len(group.asg_names) != 1:
        raise RefusedError(f"{application}/{name} names {len(group.asg_names)} Auto Scaling "
                           "groups; a blue/green copy needs exactly one")
    return group


def current_asg(target: DeployTarget, group: DeploymentGroup,
                template: TemplateVersion) -> AsgLaunch:
    """The group's ASG, which must launch from the comp's launch template."""
    asg = fleet.asg_launch(target.autoscaling, group.asg_names[0])
    if asg.template_id != template.template_id:
        raise target.resolved.problem(
            "launch_template_name",
            f"the deployment group's Auto Scaling group {asg.name} launches from "
            f"{asg.template_id or 'no launch template'}, not {template.template_name} "
            f"({template.template_id})")
    return asg


def start(target: DeployTarget, group: DeploymentGroup, asg: AsgLaunch, new: TemplateVersion,
          revision: RevisionLocationTypeDef, description: str) -> str:
    """Point the group's ASG at `new` (CodeDeploy copies it with that version) and create
    the deployment; the ASG goes back if CodeDeploy refuses."""
    moved = asg.version != str(new.number)
    if moved:
        fleet.point_asg(target.autoscaling, asg.name, new.template_id, str(new.number))
    try:
        return codedeploy.create(target.codedeploy, group, revision, description)
    except AwsError as exc:
        if moved:
            fleet.point_asg(target.autoscaling, asg.name, asg.template_id, asg.version)
        if exc.code == "DeploymentLimitExceededException":
            raise OperationFailed(f"{target.subject}: {group.name} is busy: {exc.message}; "
                                  "release again when it ends") from exc
        raise


def wait(target: DeployTarget, deployment_id: str, *, timeout_s: float, progress: ProgressFn,
         cancel: Cancel) -> Waited:
    """Poll until the deployment ends, reporting status, instance counts and lifecycle
    events; on timeout stop it (with rollback). Ctrl-C raises Interrupted and leaves it
    running. A deployment that didn't succeed comes with its failed lifecycle event."""
    lifecycle = _LifecycleWatch(target, deployment_id, progress)
    seen = ("", "", "")
    interval = _intervals()

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
        return Waited(stopped, timed_out=True,
                      failed_event=_failed_event(target, stopped, progress))
    except Interrupted:
        progress(target.subject, f"stopped waiting; deployment {deployment_id} goes on. "
                 "Run the same release again to follow it to the end (verify or roll back)")
        raise
    return Waited(state, timed_out=False, failed_event=_failed_event(target, state, progress))


def _intervals() -> Growing:
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
        return poll_until(ended, timeout_s=STOP_WAIT_S, interval_s=_intervals(),
                          what=f"stopping deployment {deployment_id}")
    except TimedOut:  # the caller says how it stands
        return codedeploy.get(target.codedeploy, deployment_id)


def replacement(target: DeployTarget, new: TemplateVersion) -> tuple[str, str]:
    """After a successful deployment: the group's (new) ASG and the AMI it launches."""
    group = _group(target)
    if len(group.asg_names) != 1:
        return ", ".join(group.asg_names), ""
    asg = fleet.asg_launch(target.autoscaling, group.asg_names[0])
    if asg.template_id != new.template_id:
        return asg.name, ""
    if asg.version == str(new.number):
        return asg.name, new.image_id
    # "$Default", "$Latest" or another number: ask what it stands for now.
    launched = fleet.version(target.ec2, template_id=asg.template_id, number=asg.version)
    return asg.name, launched.image_id


def roll_back(target: DeployTarget, new: TemplateVersion, previous: int | None,
              asg_version_before: str | None) -> tuple[str, list[str]]:
    """The launch template default back to `previous` and the group's current ASG (the
    original, after a failed blue/green deployment) off `new`. Returns the group's ASG
    and what was done, for the error message."""
    done = []
    if previous is not None and previous != new.number:
        fleet.set_default(target.ec2, new.template_id, previous)
        done.append(f"launch template {new.template_name} default back to version {previous}")
    back = asg_version_before or (str(previous) if previous is not None else None)
    group = _group(target)
    for name in group.asg_names:
        asg = fleet.asg_launch(target.autoscaling, name)
        on_new = asg.template_id == new.template_id and asg.version == str(new.number)
        if on_new and back and back != asg.version:
            fleet.point_asg(target.autoscaling, name, asg.template_id, back)
            done.append(f"Auto Scaling group {name} back to version {back}")
    return ", ".join(group.asg_names), done
