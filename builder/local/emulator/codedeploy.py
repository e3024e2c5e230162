"""CodeDeploy deployments that actually run, in seconds (moto only records them).

A thread in the emulator process moves every deployment Created → InProgress →
Succeeded, one step apart. A blue/green deployment whose green fleet is
COPY_AUTO_SCALING_GROUP does what CodeDeploy does to the Auto Scaling groups: at start
it copies the group's ASG to `CodeDeploy_<group>_<deployment-id>` (same sizes, the
launch template version resolved then, so a later `$Default` change doesn't leak in);
on success it deletes the original (unless the blue fleet is kept alive) and the
deployment group names the copy from then on. A failure (armed by `builder local
fail-next-deployment`, or a missing S3 revision) or a stop removes the copy when
rollback applies and leaves the original in place.

A blue/green deployment whose green fleet is DISCOVER_EXISTING deploys onto the one
standing ASG its targetInstances name: on success the deployment group names that ASG
from then on and the original's instances are terminated (unless the blue fleet is
kept alive) the way CodeDeploy terminates them, one by one without lowering the ASG's
sizes, so an ASG that isn't sized down launches replacements. A failure or a stop
leaves the traffic and the group on the original; both ASGs stay as they are.

The instances of a blue/green deployment are its targets: the copy's (Green) go through
the lifecycle events from ApplicationStop to AfterAllowTraffic, then the original's
(Blue) through BeforeBlockTraffic to AfterBlockTraffic, spread over the InProgress
step. An armed failure stops them at ValidateService, which ends Failed on one
instance as the agent reports a hook script that exits non-zero.

A group's deployments may be held at Created or InProgress (`hold`): they go no further
until the hold is lifted, whatever the clock says, except that a stop still ends them.
Tests use it to look at a deployment in a given state without racing the steps.

The thread works on moto's backends under the same lock as every request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from moto.autoscaling.models import autoscaling_backends
from moto.codedeploy.models import DeploymentGroup, DeploymentInfo, codedeploy_backends
from moto.core.utils import utcnow
from moto.s3.exceptions import MissingBucket
from moto.s3.models import s3_backends

from builder.aws.partition import arn
from builder.local.emulator.codedeploy_state import (
    BLUE_EVENTS,
    FINAL_STATUSES,
    GREEN_EVENTS,
    HOLD_STATUSES,
    InstanceTarget,
    LifecycleEvent,
    deployment_extras,
    group_extras,
    last_deployment_info,
)
from builder.local.emulator.moto_internals import backends
from builder.local.emulator.stepping import Stepper

log = logging.getLogger("builder.local.emulator.codedeploy")

DEFAULT_STEP_SECONDS = 1.0
# What CodeDeploy says when instances of a blue/green deployment fail their hooks.
HEALTH_CONSTRAINTS_MESSAGE = (
    "The overall deployment failed because too many individual instances failed "
    "deployment, too few healthy instances are available for deployment, or some "
    "instances in your deployment group are experiencing problems.")
# The hook an armed failure fails, as the CodeDeploy agent reports a script exiting 1.
FAILING_EVENT = "ValidateService"
FAILING_SCRIPT = "scripts/validate_service.sh"
FAILING_DIAGNOSTICS = {
    "errorCode": "ScriptFailed", "scriptName": FAILING_SCRIPT,
    "message": f"Script at specified location: {FAILING_SCRIPT} run as user root failed "
               "with exit code 1",
    "logTail": "[stderr]the service did not pass its health check"}
SUCCESS_DIAGNOSTICS = {"errorCode": "Success", "message": "Succeeded"}


class DeploymentFailure(Exception):
    """Ends a deployment Failed with CodeDeploy's errorInformation; `lifecycle_event`:
    the event that fails on one replacement instance (None: none gets that far)."""

    def __init__(self, code: str, message: str, *, lifecycle_event: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.lifecycle_event = lifecycle_event


@dataclass
class _Run:
    """The emulator's own view of one active deployment."""

    seen_at: float
    started_at: float | None = None
    original: str | None = None
    replacement: str | None = None
    failure: DeploymentFailure | None = None
    existing: bool = False  # the replacement is a standing ASG (DISCOVER_EXISTING), no copy


class DeploymentEmulator(Stepper):
    """The thread that moves every emulated deployment through its states and lifecycle events."""

    def __init__(self, lock: threading.RLock, *, step_seconds: float = DEFAULT_STEP_SECONDS,
                 on_change: Callable[[], None] = lambda: None):
        super().__init__(lock, "codedeploy-emulator", on_change)
        self.step_seconds = step_seconds
        self._runs: dict[str, _Run] = {}

    def step_seconds_now(self) -> float:
        return self.step_seconds

    def step(self) -> bool:
        return self.advance(time.monotonic())

    def arm_failure(self, account: str, region: str, application: str, group_name: str,
                    *, code: str = "HEALTH_CONSTRAINTS", message: str = "") -> None:
        """Make the group's next deployment fail (KeyError: no such group)."""
        with self._lock:
            group_extras(self._group(account, region, application, group_name)).fail_next = {
                "code": code, "message": message or HEALTH_CONSTRAINTS_MESSAGE}

    @staticmethod
    def _group(account: str, region: str, application: str, group_name: str) -> Any:
        groups = codedeploy_backends[account][region].deployment_groups
        group = groups.get(application, {}).get(group_name)
        if group is None:
            raise KeyError(f"no deployment group {application}/{group_name} in "
                           f"{account} {region}")
        return group

    def hold(self, account: str, region: str, application: str, group_name: str,
             status: str | None) -> None:
        """Hold the group's deployments at `status` (one of HOLD_STATUSES), or let them
        go on (None); KeyError: no such group."""
        if status is not None and status not in HOLD_STATUSES:
            raise ValueError(f"deployments are held at one of {', '.join(HOLD_STATUSES)}, "
                             f"not {status!r}")
        with self._lock:
            group_extras(self._group(account, region, application, group_name)).held_at = status

    def saved_runs(self, now: float) -> dict[str, dict[str, Any]]:
        """The active deployments' progress, as ages rather than clock readings (the
        clock of a restarted emulator starts elsewhere), for the saved state."""
        return {deployment_id: {
            "seen_age": now - run.seen_at,
            "started_age": None if run.started_at is None else now - run.started_at,
            "original": run.original, "replacement": run.replacement,
            "existing": run.existing,
            "failure": None if run.failure is None else {
                "code": run.failure.code, "message": run.failure.message,
                "lifecycle_event": run.failure.lifecycle_event}}
            for deployment_id, run in self._runs.items()}

    def resume(self, saved: dict[str, dict[str, Any]], now: float) -> None:
        """Go on with the deployments of a saved state where they were: one that had
        started keeps its replacement group and its failure instead of copying again."""
        for deployment_id, run in saved.items():
            started_age = run["started_age"]
            failure = run["failure"]
            self._runs[deployment_id] = _Run(
                seen_at=now - run["seen_age"],
                started_at=None if started_age is None else now - started_age,
                original=run["original"], replacement=run["replacement"],
                existing=run.get("existing", False),
                failure=None if failure is None else DeploymentFailure(
                    failure["code"], failure["message"],
                    lifecycle_event=failure["lifecycle_event"]))

    def advance(self, now: float) -> bool:
        """One pass over every active deployment of every account and region; whether
        there was one (its state may have moved)."""
        active = False
        for account, region, backend in list(backends(codedeploy_backends)):
            for deployment in list(backend.deployments.values()):
                if deployment.status in FINAL_STATUSES:
                    self._runs.pop(deployment.deployment_id, None)
                    continue
                active = True
                run = self._runs.setdefault(deployment.deployment_id, _Run(seen_at=now))
                try:
                    self._step(account, region, deployment, run, now)
                except Exception:  # a bug here must not stall every other deployment
                    log.exception("deployment %s", deployment.deployment_id)
                    deployment_extras(deployment).error_information = {
                        "code": "INTERNAL_ERROR",
                        "message": "The local CodeDeploy emulator failed; see server.log"}
                    deployment.status = "Failed"
                    self._close(deployment)
        return active

    def _step(self, account: str, region: str, deployment: DeploymentInfo, run: _Run,
              now: float) -> None:
        extras = deployment_extras(deployment)
        held_at = group_extras(deployment.deployment_group).held_at
        if extras.stop_requested:
            self._finish_stopped(account, region, deployment, run, extras.rollback_on_stop)
        elif run.started_at is None:
            if now - run.seen_at >= self.step_seconds and held_at != "Created":
                run.started_at = now
                self._start(account, region, deployment, run)
        elif now - run.started_at >= self.step_seconds and held_at != "InProgress":
            _advance_lifecycle(extras.targets.values(), run.failure, 1.0)
            if run.failure is not None:
                self._finish_failed(account, region, deployment, run, run.failure)
            else:
                self._finish_succeeded(account, region, deployment, run)
        else:
            _advance_lifecycle(extras.targets.values(), run.failure,
                               (now - run.started_at) / self.step_seconds)

    def _start(self, account: str, region: str, deployment: DeploymentInfo, run: _Run) -> None:
        group = deployment.deployment_group
        extras = group_extras(group)
        deployment.status = "InProgress"
        deployment.start_time = utcnow()
        deployment_extras(deployment).previous_revision = extras.target_revision
        extras.last_attempted = last_deployment_info(deployment)
        if extras.fail_next is not None:
            armed, extras.fail_next = extras.fail_next, None
            run.failure = DeploymentFailure(armed["code"], armed["message"],
                                            lifecycle_event=FAILING_EVENT)
        try:
            _check_revision(account, deployment.revision)
            if _green_fleet(group) == "COPY_AUTO_SCALING_GROUP":
                run.original = _only_asg(group)
                run.replacement = (
                    f"CodeDeploy_{group.deployment_group_name}_{deployment.deployment_id}")
                _copy_asg(account, region, run.original, run.replacement)
                deployment_extras(deployment).targets = _targets(
                    account, region, green=run.replacement, blue=run.original)
            elif _green_fleet(group) == "DISCOVER_EXISTING":
                run.existing = True
                run.replacement = _target_asg(account, region, deployment)
                others = [name for name in group.auto_scaling_groups
                          if name != run.replacement]
                run.original = others[0] if others else None
                deployment_extras(deployment).targets = _targets(
                    account, region, green=run.replacement, blue=run.original)
        except DeploymentFailure as failure:
            run.failure = failure
        size = _fleet_size(account, region, run.replacement or run.original)
        deployment.deployment_overview.update(InProgress=size, Pending=0)

    def _finish_succeeded(self, account: str, region: str, deployment: DeploymentInfo,
                          run: _Run) -> None:
        group = deployment.deployment_group
        if run.replacement is not None:
            action = (group.blue_green_deployment_configuration
                      .get("terminateBlueInstancesOnDeploymentSuccess", {}).get("action"))
            if action != "KEEP_ALIVE" and run.original is not None:
                if run.existing:
                    _terminate_instances(account, region, run.original)
                else:
                    _delete_asg(account, region, run.original)
            group.auto_scaling_groups = [run.replacement]
        _end_lifecycle(deployment_extras(deployment).targets.values(), failure=None)
        deployment.status = "Succeeded"
        overview = deployment.deployment_overview
        overview.update(Succeeded=overview["InProgress"], InProgress=0)
        self._close(deployment)
        extras = group_extras(group)
        extras.target_revision = deployment.revision
        extras.last_successful = extras.last_attempted

    def _finish_failed(self, account: str, region: str, deployment: DeploymentInfo, run: _Run,
                       failure: DeploymentFailure) -> None:
        extras = deployment_extras(deployment)
        extras.error_information = {"code": failure.code, "message": failure.message}
        _end_lifecycle(extras.targets.values(), failure=failure)
        if _rolls_back_on_failure(deployment):
            self._roll_back(account, region, deployment, run)
        deployment.status = "Failed"
        overview = deployment.deployment_overview
        overview.update(Failed=overview["InProgress"], InProgress=0)
        self._close(deployment)

    def _finish_stopped(self, account: str, region: str, deployment: DeploymentInfo, run: _Run,
                        roll_back: bool) -> None:
        extras = deployment_extras(deployment)
        extras.error_information = {"code": "MANUAL_STOP",
                                    "message": "The deployment was stopped by the user."}
        _end_lifecycle(extras.targets.values(), failure=None, stopped=True)
        if roll_back:
            self._roll_back(account, region, deployment, run)
        deployment.status = "Stopped"
        overview = deployment.deployment_overview
        overview.update(Skipped=overview["InProgress"] + overview["Pending"], InProgress=0,
                        Pending=0)
        self._close(deployment)

    def _roll_back(self, account: str, region: str, deployment: DeploymentInfo,
                   run: _Run) -> None:
        """Blue/green rollback: the original fleet keeps serving, the copy goes.

        CodeDeploy reports this in rollbackInfo; it makes no separate rollback
        deployment here since there is nothing to redeploy on the original fleet.
        """
        if run.replacement is not None and not run.existing:
            _delete_asg(account, region, run.replacement)
        removed = (f"; the replacement {run.replacement} was removed"
                   if run.replacement and not run.existing else "")
        deployment_extras(deployment).rollback_info = {
            "rollbackMessage": "Automatic rollback: the original instances keep serving "
            + (f"({run.original}){removed}." if run.original else "traffic.")}

    def _close(self, deployment: DeploymentInfo) -> None:
        deployment.complete_time = utcnow()
        group_extras(deployment.deployment_group).last_attempted = last_deployment_info(
            deployment)
        self._runs.pop(deployment.deployment_id, None)


def _green_fleet(group: DeploymentGroup) -> str:
    """Where a blue/green group's replacement instances come from: COPY_AUTO_SCALING_GROUP
    or DISCOVER_EXISTING ("" for an in-place group)."""
    style = group.deployment_style or {}
    if style.get("deploymentType") != "BLUE_GREEN":
        return ""
    return str(group.blue_green_deployment_configuration
               .get("greenFleetProvisioningOption", {}).get("action", ""))


def _target_asg(account: str, region: str, deployment: DeploymentInfo) -> str:
    """The one standing ASG a DISCOVER_EXISTING deployment goes onto."""
    names = list((deployment.target_instances or {}).get("autoScalingGroups") or [])
    if len(names) != 1:
        raise DeploymentFailure(
            "AUTO_SCALING_CONFIGURATION",
            "A blue/green deployment onto existing instances needs the replacement Auto "
            f"Scaling group in targetInstances (here: one), not {len(names)}")
    if names[0] not in autoscaling_backends[account][region].autoscaling_groups:
        raise DeploymentFailure("AUTO_SCALING_CONFIGURATION",
                                f"Auto Scaling group {names[0]} does not exist")
    return str(names[0])


def _only_asg(group: DeploymentGroup) -> str:
    names = list(group.auto_scaling_groups)
    if len(names) != 1:
        raise DeploymentFailure(
            "AUTO_SCALING_CONFIGURATION",
            f"A blue/green deployment copying an Auto Scaling group needs exactly one in the "
            f"deployment group, not {len(names)}")
    return str(names[0])


def _rolls_back_on_failure(deployment: DeploymentInfo) -> bool:
    config = deployment.auto_rollback_configuration or deployment.deployment_group \
        .auto_rollback_configuration or {}
    return bool(config.get("enabled")) and "DEPLOYMENT_FAILURE" in config.get("events", [])


def _check_revision(account: str, revision: dict[str, Any] | None) -> None:
    location = (revision or {}).get("s3Location")
    if not location:
        return
    bucket, key = location.get("bucket"), location.get("key")
    try:
        found = s3_backends[account]["aws"].get_object(bucket, key)
    except MissingBucket:
        found = None
    if found is None:
        raise DeploymentFailure("REVISION_MISSING",
                                f"The revision s3://{bucket}/{key} does not exist")


def _copy_asg(account: str, region: str, original_name: str, name: str) -> None:
    backend: Any = autoscaling_backends[account][region]
    original = backend.autoscaling_groups.get(original_name)
    if original is None:
        raise DeploymentFailure("AUTO_SCALING_CONFIGURATION",
                                f"Auto Scaling group {original_name} does not exist")
    template: dict[str, Any] = {}
    if original.ec2_launch_template is not None:
        version = original.ec2_launch_template.get_version(original.launch_template_version)
        template = {"LaunchTemplateId": original.ec2_launch_template.id,
                    "Version": str(version.number)}
    backend.create_auto_scaling_group(
        name=name, availability_zones=[] if original.vpc_zone_identifier
        else list(original.availability_zones),
        desired_capacity=original.desired_capacity, max_size=original.max_size,
        min_size=original.min_size,
        launch_config_name=None if template else getattr(
            original, "launch_configuration_name", None),
        launch_template=template, vpc_zone_identifier=original.vpc_zone_identifier,
        default_cooldown=original.default_cooldown,
        health_check_period=original.health_check_grace_period,
        health_check_type=original.health_check_type,
        load_balancers=list(original.load_balancer_names),
        target_group_arns=list(original.target_group_arns),
        placement_group=original.placement_group,
        termination_policies=list(original.termination_policies),
        tags=[{**tag, "ResourceId": name} for tag in original.tags],
        capacity_rebalance=original.capacity_rebalance,
        new_instances_protected_from_scale_in=original.new_instances_protected_from_scale_in,
    )


def _delete_asg(account: str, region: str, name: str) -> None:
    backend = autoscaling_backends[account][region]
    if name in backend.autoscaling_groups:
        backend.delete_auto_scaling_group(name)


def _terminate_instances(account: str, region: str, name: str) -> None:
    """Terminate the group's instances as CodeDeploy does, without lowering its sizes."""
    backend: Any = autoscaling_backends[account][region]
    group = backend.autoscaling_groups.get(name)
    for state in list(group.instance_states) if group is not None else []:
        backend.terminate_instance(state.instance.id, should_decrement=False)


def _fleet_size(account: str, region: str, name: str | None) -> int:
    group = autoscaling_backends[account][region].autoscaling_groups.get(name or "")
    return int(group.desired_capacity or 0) if group is not None else 0


def _targets(account: str, region: str, *, green: str, blue: str | None
             ) -> dict[str, InstanceTarget]:
    """A blue/green deployment's targets: the replacement's instances, then the
    original's (none: a first deployment onto the group's own ASG)."""
    groups = autoscaling_backends[account][region].autoscaling_groups
    targets = {}
    for label, name, events in (("Green", green, GREEN_EVENTS), ("Blue", blue, BLUE_EVENTS)):
        group = groups.get(name or "")
        for state in group.instance_states if group is not None else []:
            instance_id = state.instance.id
            targets[instance_id] = InstanceTarget(
                instance_id, arn(region, "ec2", account, f"instance/{instance_id}"), label,
                [LifecycleEvent(event) for event in events])
    return targets


def _advance_lifecycle(targets: Iterable[InstanceTarget], failure: DeploymentFailure | None,
                       fraction: float) -> None:
    """Move the events on to where `fraction` of the InProgress step has got: Green's
    events one after another, then Blue's; a failing deployment stops at the failing
    event, which stays InProgress until the deployment ends."""
    last = len(GREEN_EVENTS) + len(BLUE_EVENTS) - 1
    if failure is not None and failure.lifecycle_event in GREEN_EVENTS:
        last = GREEN_EVENTS.index(failure.lifecycle_event)
    reached = min(int(fraction * (last + 1)), last)
    now = utcnow()
    for target in targets:
        first = len(GREEN_EVENTS) if target.label == "Blue" else 0
        for phase, event in enumerate(target.events, start=first):
            if phase < reached:
                _set_status(target, event, "Succeeded", now)
            elif phase == reached:
                _set_status(target, event, "InProgress", now)


def _end_lifecycle(targets: Iterable[InstanceTarget], *, failure: DeploymentFailure | None,
                   stopped: bool = False) -> None:
    """The events at the deployment's end: all Succeeded; or, on a failure, its event
    Failed on the first replacement instance; the events that didn't run Skipped."""
    now = utcnow()
    failing = failure.lifecycle_event if failure is not None else None
    for target in targets:
        for event in target.events:
            if event.status == "Succeeded":
                continue
            if failure is None and not stopped:
                _set_status(target, event, "Succeeded", now)
            elif failing == event.name and target.label == "Green":
                _set_status(target, event, "Failed", now)
                event.diagnostics = dict(FAILING_DIAGNOSTICS)
                failing = None  # one instance fails
            else:
                _set_status(target, event, "Skipped", now)


def _set_status(target: InstanceTarget, event: LifecycleEvent, status: str,
                now: datetime) -> None:
    if event.status == status:
        return
    event.status = status
    event.start_time = event.start_time or now
    if status != "InProgress":
        event.end_time = now
    if status == "Succeeded":
        event.diagnostics = dict(SUCCESS_DIAGNOSTICS)
    target.status = _target_status({e.status for e in target.events})
    target.last_updated = now


def _target_status(statuses: set[str]) -> str:
    if "Failed" in statuses:
        return "Failed"
    if statuses == {"Pending"}:
        return "Pending"
    if statuses == {"Succeeded"}:
        return "Succeeded"
    return "Skipped" if statuses <= {"Succeeded", "Skipped"} else "InProgress"
