"""CodeDeploy: the typed calls of a blue/green release (group, create, status, stop,
the instances' lifecycle events) and the revision shapes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, cast

from builder.aws.session import translate
from builder.errors import AwsError, InputError

if TYPE_CHECKING:
    from mypy_boto3_codedeploy import CodeDeployClient
    from mypy_boto3_codedeploy.literals import BundleTypeType, DeploymentStatusType
    from mypy_boto3_codedeploy.type_defs import (
        DeploymentGroupInfoTypeDef,
        DeploymentInfoTypeDef,
        InstanceTargetTypeDef,
        RevisionLocationTypeDef,
    )

ACTIVE_STATUSES: tuple[DeploymentStatusType, ...] = (
    "Created", "Queued", "InProgress", "Baking", "Ready")
SUCCEEDED = "Succeeded"
FINAL_STATUSES = (SUCCEEDED, "Failed", "Stopped")
_BUNDLE_TYPES: tuple[tuple[str, BundleTypeType], ...] = (
    (".tar.gz", "tgz"), (".tgz", "tgz"), (".tar", "tar"), (".zip", "zip"))
# deploymentOverview keys, in the order a deployment moves through them.
OVERVIEW_KEYS = ("Pending", "InProgress", "Succeeded", "Failed", "Skipped", "Ready")
TARGET_BATCH = 25  # ids per BatchGetDeploymentTargets call
GROUP_BATCH = 100  # names per BatchGetDeploymentGroups call


@dataclass(frozen=True)
class DeploymentGroup:
    """A CodeDeploy deployment group as builder reads it: its ASGs, style and last deployment."""

    application: str
    name: str
    asg_names: tuple[str, ...]
    target_revision: RevisionLocationTypeDef | None
    deployment_type: str  # BLUE_GREEN or IN_PLACE
    green_fleet: str  # COPY_AUTO_SCALING_GROUP, DISCOVER_EXISTING or ""
    last_attempted: str = ""  # id of the group's latest deployment (ended or not)
    last_attempted_status: str = ""
    last_attempted_at: datetime | None = None  # when it ended (or was created, while running)

    @property
    def copies_asg(self) -> bool:
        return self.deployment_type == "BLUE_GREEN" and self.green_fleet == (
            "COPY_AUTO_SCALING_GROUP")

    @classmethod
    def from_api(cls, raw: DeploymentGroupInfoTypeDef) -> DeploymentGroup:
        blue_green = raw.get("blueGreenDeploymentConfiguration") or {}
        last = raw.get("lastAttemptedDeployment") or {}
        when = last.get("endTime") or last.get("createTime")
        return cls(
            application=raw["applicationName"], name=raw["deploymentGroupName"],
            asg_names=tuple(g["name"] for g in raw.get("autoScalingGroups", [])),
            target_revision=raw.get("targetRevision"),
            deployment_type=(raw.get("deploymentStyle") or {}).get("deploymentType", "IN_PLACE"),
            green_fleet=(blue_green.get("greenFleetProvisioningOption") or {}).get("action", ""),
            last_attempted=last.get("deploymentId", ""),
            last_attempted_status=last.get("status", ""),
            last_attempted_at=when if isinstance(when, datetime) else None)


@dataclass(frozen=True)
class Deployment:
    """A deployment's state as one GetDeployment answer tells it."""

    id: str
    status: str
    description: str = ""
    overview: Mapping[str, int] = field(default_factory=dict)
    error_code: str = ""
    error_message: str = ""
    rollback_message: str = ""

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def instances(self) -> str:
        """Instance counts, e.g. "1 in progress, 2 succeeded" ("" before any)."""
        return ", ".join(f"{self.overview[key]} {_words(key)}" for key in OVERVIEW_KEYS
                         if self.overview.get(key))

    @property
    def error(self) -> str:
        """CodeDeploy's errorInformation and rollbackInfo in one line."""
        message = self.error_message.rstrip(". ")
        parts = [f"{self.error_code}: {message}" if self.error_code else message]
        if self.rollback_message:
            parts.append(f"rollback: {self.rollback_message.rstrip('. ')}")
        return "; ".join(part for part in parts if part)

    @classmethod
    def from_api(cls, raw: DeploymentInfoTypeDef) -> Deployment:
        error = raw.get("errorInformation") or {}
        # Every value of the overview is an instance count.
        counts = cast("Mapping[str, int]", raw.get("deploymentOverview") or {})
        return cls(id=raw["deploymentId"], status=raw.get("status", ""),
                   description=raw.get("description", ""),
                   overview={k: int(v) for k, v in counts.items()},
                   error_code=error.get("code", ""), error_message=error.get("message", ""),
                   rollback_message=(raw.get("rollbackInfo") or {}).get("rollbackMessage", ""))


@dataclass(frozen=True)
class LifecycleEvent:
    """One lifecycle event (Install, ValidateService, ...) of one deployment target."""

    name: str
    status: str  # Pending, InProgress, Succeeded, Failed, Skipped, Unknown
    error_code: str = ""  # diagnostics: ScriptFailed, ScriptTimedOut, ...
    message: str = ""
    script: str = ""


@dataclass(frozen=True)
class Target:
    """One instance of a deployment and its lifecycle events."""

    id: str
    status: str
    label: str  # Blue (original), Green (replacement), or "" (in-place)
    events: tuple[LifecycleEvent, ...]

    @property
    def failed_event(self) -> LifecycleEvent | None:
        return next((event for event in self.events if event.status == "Failed"), None)

    @property
    def running_event(self) -> LifecycleEvent | None:
        return next((event for event in self.events if event.status == "InProgress"), None)

    @property
    def step(self) -> str:
        """Where the instance is: "at Install", "failed at ValidateService", "succeeded"."""
        if self.running_event is not None:
            return f"at {self.running_event.name}"
        if self.failed_event is not None:
            return f"failed at {self.failed_event.name}"
        return self.status.lower()

    @classmethod
    def from_api(cls, raw: InstanceTargetTypeDef) -> Target:
        events = []
        for event in raw.get("lifecycleEvents") or []:
            diagnostics = event.get("diagnostics") or {}
            events.append(LifecycleEvent(
                name=event.get("lifecycleEventName", ""), status=event.get("status", ""),
                error_code=diagnostics.get("errorCode", ""),
                message=diagnostics.get("message", ""), script=diagnostics.get("scriptName", "")))
        return cls(id=raw.get("targetId", ""), status=raw.get("status", ""),
                   label=raw.get("instanceLabel", ""), events=tuple(events))


@dataclass(frozen=True)
class FailedEvent:
    """The lifecycle event that failed a deployment, on one instance."""

    target: str
    label: str
    event: str
    error_code: str
    message: str
    script: str

    @property
    def text(self) -> str:
        """E.g. "lifecycle event ValidateService failed on i-0ab (Green): ScriptFailed: ..."."""
        where = f"{self.target} ({self.label})" if self.label else self.target
        detail = ": ".join(part for part in (self.error_code, self.message.rstrip(". ")) if part)
        if self.script and self.script not in self.message:
            detail += f" (script {self.script})"
        return f"lifecycle event {self.event} failed on {where}" + (f": {detail}" if detail
                                                                      else "")

    def to_json(self) -> dict[str, str]:
        return {"target": self.target, "label": self.label, "event": self.event,
                "error_code": self.error_code, "message": self.message, "script": self.script}


def _words(key: str) -> str:
    return "in progress" if key == "InProgress" else key.lower()


def group(codedeploy: CodeDeployClient, application: str, name: str) -> DeploymentGroup:
    """Read one deployment group (it names the ASG CodeDeploy currently serves)."""
    with translate(f"reading deployment group {application}/{name}"):
        return DeploymentGroup.from_api(codedeploy.get_deployment_group(
            applicationName=application, deploymentGroupName=name)["deploymentGroupInfo"])


def groups(codedeploy: CodeDeployClient, application: str, names: Sequence[str]
           ) -> list[DeploymentGroup]:
    """The application's groups of these names (those that exist), GROUP_BATCH a call."""
    found: list[DeploymentGroup] = []
    for start in range(0, len(names), GROUP_BATCH):
        with translate(f"reading the deployment groups of {application}"):
            infos = codedeploy.batch_get_deployment_groups(
                applicationName=application,
                deploymentGroupNames=list(names[start:start + GROUP_BATCH]),
            )["deploymentGroupsInfo"]
        found += [DeploymentGroup.from_api(info) for info in infos]
    return found


def create(codedeploy: CodeDeployClient, deployment_group: DeploymentGroup,
           revision: RevisionLocationTypeDef, description: str,
           onto_asgs: Sequence[str] = ()) -> str:
    """Start a deployment of `revision` to the group; returns its id. `onto_asgs`: the
    replacement Auto Scaling groups of a blue/green group that discovers them
    (DISCOVER_EXISTING)."""
    with translate(f"creating a deployment of {deployment_group.application}/"
                   f"{deployment_group.name}"):
        if onto_asgs:
            return str(codedeploy.create_deployment(
                applicationName=deployment_group.application,
                deploymentGroupName=deployment_group.name, revision=revision,
                description=description,
                targetInstances={"autoScalingGroups": list(onto_asgs)})["deploymentId"])
        return str(codedeploy.create_deployment(
            applicationName=deployment_group.application,
            deploymentGroupName=deployment_group.name, revision=revision,
            description=description)["deploymentId"])


def get(codedeploy: CodeDeployClient, deployment_id: str) -> Deployment:
    """Read one deployment: its status, counts and error information."""
    with translate(f"reading deployment {deployment_id}"):
        return Deployment.from_api(
            codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"])


def active(codedeploy: CodeDeployClient, application: str, group_name: str) -> list[str]:
    """Ids of the group's deployments that haven't ended (CodeDeploy allows one)."""
    with translate(f"listing active deployments of {application}/{group_name}"):
        return list(codedeploy.list_deployments(
            applicationName=application, deploymentGroupName=group_name,
            includeOnlyStatuses=list(ACTIVE_STATUSES))["deployments"])


def target_ids(codedeploy: CodeDeployClient, deployment_id: str, *,
               statuses: Sequence[str] = ()) -> list[str]:
    """Ids of the deployment's instances (the first page), only those in `statuses` when
    given; none before the deployment has started."""
    try:
        with translate(f"listing the instances of deployment {deployment_id}"):
            found = (codedeploy.list_deployment_targets(
                deploymentId=deployment_id, targetFilters={"TargetStatus": list(statuses)})
                if statuses else codedeploy.list_deployment_targets(deploymentId=deployment_id))
            return list(found.get("targetIds", []))
    except AwsError as exc:
        if exc.code == "DeploymentNotStartedException":
            return []
        raise


def targets(codedeploy: CodeDeployClient, deployment_id: str, ids: Sequence[str]) -> list[Target]:
    """The first TARGET_BATCH of `ids` with their lifecycle events, in one call."""
    if not ids:
        return []
    with translate(f"reading the lifecycle events of deployment {deployment_id}"):
        found = codedeploy.batch_get_deployment_targets(
            deploymentId=deployment_id, targetIds=list(ids[:TARGET_BATCH]))
    return [Target.from_api(raw["instanceTarget"]) for raw in found.get("deploymentTargets", [])
            if raw.get("instanceTarget")]


def failed_event(codedeploy: CodeDeployClient, deployment_id: str) -> FailedEvent | None:
    """The failed lifecycle event of the deployment's first failed instance (two calls)."""
    failed = target_ids(codedeploy, deployment_id, statuses=["Failed"])
    for target in targets(codedeploy, deployment_id, failed):
        event = target.failed_event
        if event is not None:
            return FailedEvent(target.id, target.label, event.name, event.error_code,
                               event.message, event.script)
    return None


def stop(codedeploy: CodeDeployClient, deployment_id: str) -> None:
    """Stop with rollback; a deployment that ended meanwhile is left as it ended."""
    try:
        with translate(f"stopping deployment {deployment_id}"):
            codedeploy.stop_deployment(deploymentId=deployment_id, autoRollbackEnabled=True)
    except AwsError as exc:
        if exc.code != "DeploymentAlreadyCompletedException":
            raise


def s3_revision(uri: str) -> RevisionLocationTypeDef:
    """`s3://bucket/key.zip` as a CodeDeploy revision (bundle type from the extension)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise InputError(f"--revision {uri!r}: expected s3://BUCKET/KEY")
    bundle = next((kind for suffix, kind in _BUNDLE_TYPES if key.endswith(suffix)), None)
    if bundle is None:
        raise InputError(f"--revision {uri!r}: the key must end in .zip, .tar, .tar.gz or "
                         ".tgz (the bundle type)")
    return {"revisionType": "S3",
            "s3Location": {"bucket": bucket, "key": key, "bundleType": bundle}}


def revision_text(revision: RevisionLocationTypeDef) -> str:
    """A revision as people write it: s3://bucket/key, or its type and fields."""
    location = revision.get("s3Location")
    if location:
        return f"s3://{location.get('bucket')}/{location.get('key')}"
    return str(revision.get("revisionType", "revision"))
