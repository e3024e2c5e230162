"""CodeDeploy as the API reports it where moto falls short, and the state that takes.

moto leaves fields empty (errorInformation, rollbackInfo, targetRevision, the groups'
last deployments), lacks stop_deployment and batch_get_deployment_groups, allows any
number of active deployments per group, and has no deployment targets. Here each
deployment and group carries the extras CodeDeploy reports, one deployment per group may
be active (DeploymentLimitExceededException), and the instance targets with their
lifecycle events are listed and read (list_deployment_targets,
batch_get_deployment_targets). builder.local.emulator.codedeploy advances the
deployments and writes this state.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from moto.codedeploy import responses as codedeploy_responses
from moto.codedeploy.exceptions import CodeDeployException
from moto.codedeploy.models import CodeDeployBackend, DeploymentGroup, DeploymentInfo
from moto.core.responses import ActionResult
from moto.core.utils import utcnow

from builder.local.emulator.moto_internals import original

FINAL_STATUSES = ("Succeeded", "Failed", "Stopped")
# Where a group's deployments may be held: not started yet, or started and not ending.
HOLD_STATUSES = ("Created", "InProgress")
DEPLOYMENT_ID_ALPHABET = string.ascii_uppercase + string.digits
# The lifecycle events of a blue/green deployment's instances, in order: the replacement
# (Green) instances install and take traffic, then the original (Blue) ones lose it.
GREEN_EVENTS = ("ApplicationStop", "DownloadBundle", "BeforeInstall", "Install", "AfterInstall",
                "ApplicationStart", "ValidateService", "BeforeAllowTraffic", "AllowTraffic",
                "AfterAllowTraffic")
BLUE_EVENTS = ("BeforeBlockTraffic", "BlockTraffic", "AfterBlockTraffic")
TARGET_FILTERS = ("TargetStatus", "ServerInstanceLabel")
MAX_TARGET_IDS = 25  # per BatchGetDeploymentTargets call

@dataclass
class LifecycleEvent:
    """One lifecycle event of one instance of a deployment."""

    name: str
    status: str = "Pending"
    start_time: datetime | None = None
    end_time: datetime | None = None
    diagnostics: dict[str, str] | None = None

    def to_api(self) -> dict[str, Any]:
        info: dict[str, Any] = {"lifecycleEventName": self.name, "status": self.status,
                                "startTime": self.start_time, "endTime": self.end_time,
                                "diagnostics": self.diagnostics}
        return {key: value for key, value in info.items() if value is not None}


@dataclass
class InstanceTarget:
    """One instance of a blue/green deployment, as BatchGetDeploymentTargets reports it."""

    instance_id: str
    arn: str
    label: str  # Green: the replacement's instances, Blue: the original's
    events: list[LifecycleEvent]
    status: str = "Pending"
    last_updated: datetime = field(default_factory=utcnow)

    def to_api(self, deployment_id: str) -> dict[str, Any]:
        return {"deploymentId": deployment_id, "targetId": self.instance_id,
                "targetArn": self.arn, "status": self.status,
                "lastUpdatedAt": self.last_updated, "instanceLabel": self.label,
                "lifecycleEvents": [event.to_api() for event in self.events]}


@dataclass
class DeploymentExtras:
    """What CodeDeploy reports about a deployment and moto doesn't keep."""

    error_information: dict[str, str] | None = None
    rollback_info: dict[str, str] | None = None
    previous_revision: dict[str, Any] | None = None
    stop_requested: bool = False
    rollback_on_stop: bool = True
    targets: dict[str, InstanceTarget] = field(default_factory=dict)  # by instance id


@dataclass
class GroupExtras:
    """What CodeDeploy reports about a deployment group and moto doesn't keep, the
    failure armed for its next deployment (`builder local fail-next-deployment`), and
    the status its deployments are held at (tests step them without racing the clock)."""

    target_revision: dict[str, Any] | None = None
    last_successful: dict[str, Any] | None = None
    last_attempted: dict[str, Any] | None = None
    fail_next: dict[str, str] | None = None
    held_at: str | None = None  # one of HOLD_STATUSES


def deployment_extras(deployment: Any) -> DeploymentExtras:
    """The extras a moto deployment carries (made on first use)."""
    if not hasattr(deployment, "builder_extras"):
        deployment.builder_extras = DeploymentExtras()
    extras: DeploymentExtras = deployment.builder_extras
    return extras


def group_extras(group: Any) -> GroupExtras:
    """The extras a moto deployment group carries (made on first use)."""
    if not hasattr(group, "builder_extras"):
        group.builder_extras = GroupExtras()
    extras: GroupExtras = group.builder_extras
    return extras


def last_deployment_info(deployment: DeploymentInfo) -> dict[str, Any]:
    """A group's lastSuccessfulDeployment / lastAttemptedDeployment entry."""
    info: dict[str, Any] = {"deploymentId": deployment.deployment_id,
                            "status": deployment.status, "createTime": deployment.create_time}
    if deployment.complete_time is not None:
        info["endTime"] = deployment.complete_time
    return info


class DeploymentAlreadyCompletedException(CodeDeployException):
    """CodeDeploy's answer to stopping a deployment that has ended."""

    code = 400

    def __init__(self, deployment_id: str):
        super().__init__("DeploymentAlreadyCompletedException",
                         f"Deployment {deployment_id} has already completed.")


class DeploymentLimitExceededException(CodeDeployException):
    """CodeDeploy's answer to a second deployment while the group has one running."""

    code = 400

    def __init__(self, group: str, deployment_id: str):
        super().__init__("DeploymentLimitExceededException",
                         f"The Deployment Group '{group}' already has an active Deployment "
                         f"'{deployment_id}'")


def create_deployment(self: Any, application_name: str, deployment_group_name: str,
                       revision: dict[str, Any] | None = None, **kwargs: Any) -> str:
    """A revision is required, and one deployment per group may be active (CodeDeploy)."""
    if not revision:
        raise CodeDeployException("RevisionRequiredException", "The revision ID was not specified.")
    for deployment in self.deployments.values():
        if (deployment.application_name == application_name
                and deployment.deployment_group_name == deployment_group_name
                and deployment.status not in FINAL_STATUSES):
            raise DeploymentLimitExceededException(deployment_group_name,
                                                   deployment.deployment_id)
    deployment_id: str = original(CodeDeployBackend, "create_deployment")(
        self, application_name, deployment_group_name, revision, **kwargs)
    return deployment_id


def init_deployment(self: Any, *args: Any, **kwargs: Any) -> None:
    """Deployment ids as CodeDeploy writes them (d-XXXXXXXXX), not moto's UUIDs: they end
    up in the names of the replacement Auto Scaling groups."""
    original(DeploymentInfo, "__init__")(self, *args, **kwargs)
    self.deployment_id = "d-" + "".join(secrets.choice(DEPLOYMENT_ID_ALPHABET)
                                        for _ in range(9))


def stop_deployment_response(self: Any) -> ActionResult:
    """StopDeployment: AWS answers Pending and the deployment ends Stopped shortly after
    (the emulator does the stopping, with rollback unless autoRollbackEnabled=false)."""
    deployment_id = self._get_param("deploymentId")
    deployment = self.codedeploy_backend.get_deployment(deployment_id)
    if deployment.status in FINAL_STATUSES:
        raise DeploymentAlreadyCompletedException(deployment_id)
    extras = deployment_extras(deployment)
    extras.stop_requested = True
    extras.rollback_on_stop = self._get_param("autoRollbackEnabled") is not False
    return ActionResult({"status": "Pending", "statusMessage": "Stopping the deployment."})


def batch_get_deployment_groups_response(self: Any) -> ActionResult:
    """BatchGetDeploymentGroups: the groups found, and an errorMessage naming the rest."""
    backend: CodeDeployBackend = self.codedeploy_backend
    application = self._get_param("applicationName")
    infos, missing = [], []
    for name in self._get_param("deploymentGroupNames") or []:
        group = backend.deployment_groups.get(application, {}).get(name)
        if group is None:
            missing.append(name)
        else:
            infos.append(codedeploy_responses._deployment_group_info(group))
    message = f"Deployment groups not found: {', '.join(missing)}" if missing else ""
    return ActionResult({"deploymentGroupsInfo": infos, "errorMessage": message})


def _started_deployment(response: Any) -> Any:
    """The deployment a targets call names; CodeDeploy has targets only once it started."""
    deployment_id = response._get_param("deploymentId")
    if not deployment_id:
        raise CodeDeployException("DeploymentIdRequiredException",
                                  "At least one deployment ID must be specified.")
    deployment = response.codedeploy_backend.get_deployment(deployment_id)
    if deployment.status in ("Created", "Queued"):
        raise CodeDeployException("DeploymentNotStartedException",
                                  "The specified deployment has not started.")
    return deployment


def list_deployment_targets_response(self: Any) -> ActionResult:
    """ListDeploymentTargets with CodeDeploy's two target filters."""
    deployment = _started_deployment(self)
    filters: dict[str, list[str]] = self._get_param("targetFilters") or {}
    unknown = sorted(set(filters) - set(TARGET_FILTERS))
    if unknown:
        raise CodeDeployException("InvalidTargetFilterNameException",
                                  f"The target filter name {unknown[0]} is invalid.")
    statuses, labels = filters.get("TargetStatus"), filters.get("ServerInstanceLabel")
    return ActionResult({"targetIds": [
        target.instance_id for target in deployment_extras(deployment).targets.values()
        if (not statuses or target.status in statuses)
        and (not labels or target.label in labels)]})


def batch_get_deployment_targets_response(self: Any) -> ActionResult:
    """BatchGetDeploymentTargets: the instance targets and their lifecycle events."""
    deployment = _started_deployment(self)
    target_ids: list[str] = self._get_param("targetIds") or []
    if not target_ids:
        raise CodeDeployException("DeploymentTargetIdRequiredException",
                                  "A deployment target ID must be specified.")
    if len(target_ids) > MAX_TARGET_IDS:
        # The API reference caps a call at 25 ids without naming the error for EC2
        # targets; this is the error CodeDeploy has for too many targets.
        raise CodeDeployException("DeploymentTargetListSizeExceededException",
                                  f"At most {MAX_TARGET_IDS} deployment target IDs may be "
                                  "given.")
    targets = deployment_extras(deployment).targets
    missing = [target_id for target_id in target_ids if target_id not in targets]
    if missing:
        raise CodeDeployException("DeploymentTargetDoesNotExistException",
                                  f"The deployment target {missing[0]} does not belong to "
                                  f"deployment {deployment.deployment_id}.")
    return ActionResult({"deploymentTargets": [
        {"deploymentTargetType": "InstanceTarget",
         "instanceTarget": targets[target_id].to_api(deployment.deployment_id)}
        for target_id in target_ids]})


def deployment_info(deployment: DeploymentInfo) -> dict[str, Any]:
    """moto's deploymentInfo with errorInformation, rollbackInfo and previousRevision."""
    extras = deployment_extras(deployment)
    return _with_extras(original(codedeploy_responses, "_deployment_info")(deployment), {
        "errorInformation": extras.error_information, "rollbackInfo": extras.rollback_info,
        "previousRevision": extras.previous_revision})


def group_info(group: DeploymentGroup) -> dict[str, Any]:
    """moto's deploymentGroupInfo with the target revision and the last deployments."""
    extras = group_extras(group)
    info = _with_extras(original(codedeploy_responses, "_deployment_group_info")(group), {
        "targetRevision": extras.target_revision,
        "lastSuccessfulDeployment": extras.last_successful,
        "lastAttemptedDeployment": extras.last_attempted})
    # CodeDeploy lists the group's Auto Scaling groups as objects, moto as bare names.
    info["autoScalingGroups"] = [{"name": name} for name in group.auto_scaling_groups]
    return info


def _with_extras(info: dict[str, Any], extras: dict[str, Any]) -> dict[str, Any]:
    """moto's answer with these fields ours; like CodeDeploy, it leaves out a field it
    has no value for (ours when empty, any when null)."""
    merged = {**info, **extras}
    return {key: value for key, value in merged.items()
            if value is not None and (key not in extras or value)}
