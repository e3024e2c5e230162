"""Auto Scaling instance refreshes that actually replace instances, in seconds (moto
has no StartInstanceRefresh, DescribeInstanceRefreshes, CancelInstanceRefresh or
RollbackInstanceRefresh).

A thread in the emulator process moves each refresh one step at a time (the step time
of the CodeDeploy emulator): Pending → InProgress, then a batch of instances per step,
each terminated and replaced by one of the desired launch-template version, as many at
once as MinHealthyPercentage leaves out of service (at least one). At each of its
CheckpointPercentages it pauses one step (CheckpointDelay, in emulator time). Once every
instance is replaced it ends Successful and the group launches the desired version.

A failure armed for the group (`builder local fail-next-refresh`) fails the refresh
after its first batch, as failing health checks do: with AutoRollback it goes
RollbackInProgress and puts back, a batch per step, instances of the version the group
had before (RollbackSuccessful), else it ends Failed. CancelInstanceRefresh ends it
Cancelled where it is; RollbackInstanceRefresh rolls back a refresh in progress.
AlarmSpecification is accepted and not watched.

Refreshes (and the group's armed failure and hold) live on moto's group objects, with
wall-clock times, so the saved state keeps them and a restarted emulator goes on. A
group's refreshes may be held (`hold`) where they are ("Pending": not started, or not
moving) or at the next checkpoint they reach ("Checkpoint"): they go no further until
the hold is lifted, except that a cancel or rollback still ends them. Tests use it to
look at a refresh in a given state without racing the steps.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.autoscaling.exceptions import AutoscalingClientError
from moto.autoscaling.models import autoscaling_backends
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import ActionResult

from builder.local.emulator.moto_internals import backends
from builder.local.emulator.stepping import Stepper

log = logging.getLogger("builder.local.emulator.autoscaling_refresh")

ACTIVE = ("Pending", "InProgress", "Cancelling", "RollbackInProgress")
# Where a group's refreshes may be held: where they are, or at their next checkpoint.
HOLDS = ("Pending", "Checkpoint")
_UNPINNED = ("$Default", "$Latest")
FAILURE_REASON = "Instance refresh failed: replacement instances failed their health checks"


class RefreshError(AutoscalingClientError):
    """An Auto Scaling error with its code (InstanceRefreshInProgress, ...)."""

    def __init__(self, code: str, message: str):
        super().__init__(code, message)


@dataclass
class EmulatedRefresh:
    """One instance refresh of a group, as the emulator runs it."""

    id: str
    group: str
    preferences: dict[str, Any]
    desired: dict[str, str]  # {"LaunchTemplateId", "Version"}
    before: dict[str, str]  # the group's launch template spec when it started
    to_replace: list[str]  # instance ids still on the old configuration
    total: int
    fail: bool
    next_at: float  # wall clock: when it moves next
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: str = "Pending"
    reason: str = ""
    ended: datetime | None = None
    launched: list[str] = field(default_factory=list)  # its new instances
    to_restore: list[str] = field(default_factory=list)  # rolling back: new ones left
    rollback_reason: str = ""
    rollback_started: datetime | None = None
    rollback_total: int = 0
    checkpoints_passed: list[int] = field(default_factory=list)

    @property
    def percent(self) -> int:
        return 100 * (self.total - len(self.to_replace)) // self.total if self.total else 100

    def to_api(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "InstanceRefreshId": self.id, "AutoScalingGroupName": self.group,
            "Status": self.status, "StatusReason": self.reason, "StartTime": self.started,
            "PercentageComplete": self.percent, "InstancesToUpdate": len(self.to_replace),
            "Preferences": self.preferences, "Strategy": "Rolling",
            "DesiredConfiguration": {"LaunchTemplate": dict(self.desired)}}
        if self.ended is not None:
            info["EndTime"] = self.ended
        if self.rollback_started is not None:
            restored = self.rollback_total - len(self.to_restore)
            info["RollbackDetails"] = {
                "RollbackReason": self.rollback_reason,
                "RollbackStartTime": self.rollback_started,
                "PercentageCompleteOnRollback": 100 * restored // self.rollback_total
                if self.rollback_total else 100,
                "InstancesToUpdateOnRollback": len(self.to_restore)}
        return {key: value for key, value in info.items() if value not in ("", None)}


@dataclass
class RefreshControls:
    """What tests set on a group: its next refresh fails; its refreshes are held."""

    fail_next: bool = False
    held_at: str | None = None  # one of HOLDS


def _refreshes(group: Any) -> list[EmulatedRefresh]:
    """The group's refreshes, newest first (made on first use)."""
    if not hasattr(group, "builder_refreshes"):
        group.builder_refreshes = []
    found: list[EmulatedRefresh] = group.builder_refreshes
    return found


def _controls(group: Any) -> RefreshControls:
    if not hasattr(group, "builder_refresh_controls"):
        group.builder_refresh_controls = RefreshControls()
    controls: RefreshControls = group.builder_refresh_controls
    return controls


def _group(response: Any) -> Any:
    name = response._get_param("AutoScalingGroupName")
    group = response.autoscaling_backend.autoscaling_groups.get(name)
    if group is None:
        raise RefreshError("ValidationError", f"AutoScalingGroup name not found - {name}")
    return group


def _active(group: Any) -> EmulatedRefresh | None:
    return next((r for r in _refreshes(group) if r.status in ACTIVE), None)


# -- the API (methods of moto's AutoScalingResponse) -------------------------------------

# The emulator's step time, set by the server before it serves.
STEP = {"seconds": 1.0}


def start_instance_refresh(self: AutoScalingResponse) -> ActionResult:
    """StartInstanceRefresh: one active refresh per group; AutoRollback needs versions by
    number (the desired one and the group's)."""
    group = _group(self)
    if _active(group) is not None:
        raise RefreshError("InstanceRefreshInProgress",
                           f"An Instance Refresh is already in progress and blocks the "
                           f"execution of this Instance Refresh for {group.name}.")
    preferences: dict[str, Any] = dict(self._get_param("Preferences") or {})
    desired = dict((self._get_param("DesiredConfiguration") or {}).get("LaunchTemplate") or {})
    template = group.ec2_launch_template
    if preferences.get("AutoRollback"):
        if not desired:
            raise RefreshError("ValidationError", "AutoRollback requires a desired "
                               "configuration")
        if str(desired.get("Version") or "$Default") in _UNPINNED or str(
                group.launch_template_version) in _UNPINNED:
            raise RefreshError("ValidationError", "AutoRollback is not supported when the "
                               "group or the desired configuration uses $Latest or $Default")
    if desired:
        if template is None or desired.get("LaunchTemplateId", template.id) != template.id:
            raise RefreshError("ValidationError", "the desired launch template is not the "
                               "group's (the emulator refreshes within one template)")
        desired = {"LaunchTemplateId": template.id,
                   "Version": str(template.get_version(desired.get("Version")).number)}
    else:
        desired = {"LaunchTemplateId": template.id, "Version": str(group.launch_template_version)}
    preferences.setdefault("MinHealthyPercentage", 90)
    controls = _controls(group)
    ids = [state.instance.id for state in group.instance_states]
    refresh = EmulatedRefresh(
        id=str(uuid.uuid4()), group=group.name, preferences=preferences, desired=desired,
        before={"LaunchTemplateId": template.id, "Version": str(group.launch_template_version)},
        to_replace=ids, total=len(ids), fail=controls.fail_next,
        next_at=time.time() + STEP["seconds"])
    controls.fail_next = False
    _refreshes(group).insert(0, refresh)
    return ActionResult({"InstanceRefreshId": refresh.id})


def describe_instance_refreshes(self: AutoScalingResponse) -> ActionResult:
    """DescribeInstanceRefreshes: the group's, newest first, or those asked for."""
    group = _group(self)
    wanted = set(self._get_param("InstanceRefreshIds") or [])
    found = [r.to_api() for r in _refreshes(group) if not wanted or r.id in wanted]
    return ActionResult({"InstanceRefreshes": found[:int(self._get_param("MaxRecords") or 50)]})


def cancel_instance_refresh(self: AutoScalingResponse) -> ActionResult:
    """CancelInstanceRefresh: the refresh in progress stops where it is."""
    group = _group(self)
    refresh = _active(group)
    if refresh is None or refresh.status not in ("Pending", "InProgress"):
        raise RefreshError("ActiveInstanceRefreshNotFound",
                           f"No in progress or pending Instance Refresh found for Auto "
                           f"Scaling group {group.name}")
    refresh.status, refresh.reason = "Cancelling", "Cancelling the instance refresh"
    return ActionResult({"InstanceRefreshId": refresh.id})


def rollback_instance_refresh(self: AutoScalingResponse) -> ActionResult:
    """RollbackInstanceRefresh: the refresh in progress puts back what it replaced."""
    group = _group(self)
    refresh = _active(group)
    if refresh is None:
        raise RefreshError("ActiveInstanceRefreshNotFound",
                           f"No in progress or pending Instance Refresh found for Auto "
                           f"Scaling group {group.name}")
    if refresh.status not in ("Pending", "InProgress") or refresh.before["Version"] in _UNPINNED:
        raise RefreshError("IrreversibleInstanceRefresh",
                           f"Instance refresh {refresh.id} can't be rolled back")
    _start_rollback(refresh, "Rollback requested by the user")
    return ActionResult({"InstanceRefreshId": refresh.id})


# -- the thread -------------------------------------------------------------------------


class RefreshEmulator(Stepper):
    """The thread that moves every emulated instance refresh on, a step at a time."""

    def __init__(self, lock: threading.RLock, *, step_seconds: float,
                 on_change: Callable[[], None] = lambda: None):
        super().__init__(lock, "refresh-emulator", on_change)
        STEP["seconds"] = step_seconds

    def step_seconds_now(self) -> float:
        return STEP["seconds"]

    def step(self) -> bool:
        return advance(time.time())


def advance(now: float) -> bool:
    """One pass over every active refresh; whether one moved."""
    moved = False
    for _account, _region, backend in list(backends(autoscaling_backends)):
        for group in list(backend.autoscaling_groups.values()):
            refresh = _active(group)
            if refresh is None or now < refresh.next_at:
                continue
            if _held(_controls(group).held_at, refresh):
                continue
            try:
                _step(group, refresh)
            except Exception:  # a bug here must not stall every other refresh
                log.exception("instance refresh %s", refresh.id)
                refresh.status, refresh.reason = "Failed", "The local emulator failed"
                refresh.ended = datetime.now(UTC)
            refresh.next_at = now + STEP["seconds"]
            moved = True
    return moved


def _held(held_at: str | None, refresh: EmulatedRefresh) -> bool:
    if refresh.status not in ("Pending", "InProgress"):
        return False  # a cancel or rollback ends it anyway
    return held_at == "Pending" or (held_at == "Checkpoint"
                                    and refresh.reason.startswith("Checkpoint"))


def _step(group: Any, refresh: EmulatedRefresh) -> None:
    if refresh.status == "Pending":
        refresh.status, refresh.reason = "InProgress", ""
    elif refresh.status == "Cancelling":
        _end(refresh, "Cancelled", "The instance refresh was cancelled")
    elif refresh.status == "RollbackInProgress":
        batch = refresh.to_restore[:_batch(group, refresh)]
        _replace(group, batch, refresh.before["Version"])
        refresh.to_restore = refresh.to_restore[len(batch):]
        if not refresh.to_restore:
            _end(refresh, "RollbackSuccessful", refresh.reason)
    elif refresh.status == "InProgress":
        if refresh.reason.startswith("Checkpoint"):  # paused there one step
            refresh.reason = ""
            return
        batch = refresh.to_replace[:_batch(group, refresh)]
        refresh.launched += _replace(group, batch, refresh.desired["Version"])
        refresh.to_replace = refresh.to_replace[len(batch):]
        if refresh.fail:
            if refresh.preferences.get("AutoRollback"):
                _start_rollback(refresh, FAILURE_REASON)
            else:
                _end(refresh, "Failed", FAILURE_REASON)
            return
        passed = [p for p in refresh.preferences.get("CheckpointPercentages") or []
                  if p <= refresh.percent and p not in refresh.checkpoints_passed]
        if passed:
            refresh.checkpoints_passed += passed
            refresh.reason = f"Checkpoint {passed[-1]}% reached: waiting"
            if refresh.to_replace:
                return
        if not refresh.to_replace:
            group.launch_template_version = refresh.desired["Version"]
            group.provided_launch_template_version = refresh.desired["Version"]
            _end(refresh, "Successful", "")


def _start_rollback(refresh: EmulatedRefresh, reason: str) -> None:
    refresh.status, refresh.reason = "RollbackInProgress", reason
    refresh.rollback_reason = reason
    refresh.rollback_started = datetime.now(UTC)
    refresh.to_restore = list(refresh.launched)
    refresh.rollback_total = len(refresh.to_restore)
    refresh.next_at = time.time() + STEP["seconds"]


def _end(refresh: EmulatedRefresh, status: str, reason: str) -> None:
    refresh.status, refresh.reason = status, reason
    refresh.ended = datetime.now(UTC)


def _batch(group: Any, refresh: EmulatedRefresh) -> int:
    """How many instances go out of service at once: what MinHealthyPercentage spares."""
    size = len(group.instance_states)
    healthy = math.ceil(size * int(refresh.preferences.get("MinHealthyPercentage", 90)) / 100)
    return max(1, size - healthy)


def _replace(group: Any, instance_ids: list[str], version: str) -> list[str]:
    """Terminate these instances of the group and launch as many of launch-template
    `version`; the new instances' ids."""
    leaving = [s for s in group.instance_states if s.instance.id in instance_ids]
    if not leaving:
        return []
    group.autoscaling_backend.ec2_backend.terminate_instances([s.instance.id for s in leaving])
    group.instance_states = [s for s in group.instance_states if s not in leaving]
    known = {s.instance.id for s in group.instance_states}
    serving = group.launch_template_version
    group.launch_template_version = version
    try:
        group.replace_autoscaling_group_instances(len(leaving), group.get_propagated_tags())
    finally:
        group.launch_template_version = serving
    return [s.instance.id for s in group.instance_states if s.instance.id not in known]


# -- control (tests) --------------------------------------------------------------------


def _named_group(account: str, region: str, name: str) -> Any:
    group = autoscaling_backends[account][region].autoscaling_groups.get(name)
    if group is None:
        raise KeyError(f"no Auto Scaling group {name} in {account} {region}")
    return group


def arm_failure(account: str, region: str, name: str) -> None:
    """Make the group's next refresh fail (KeyError: no such group)."""
    _controls(_named_group(account, region, name)).fail_next = True


def hold(account: str, region: str, name: str, at: str | None) -> None:
    """Hold the group's refreshes `at` one of HOLDS, or let them go on (None);
    KeyError: no such group."""
    if at is not None and at not in HOLDS:
        raise ValueError(f"refreshes are held at one of {', '.join(HOLDS)}, not {at!r}")
    _controls(_named_group(account, region, name)).held_at = at
