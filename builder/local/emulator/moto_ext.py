"""Every change we make to moto, in one place, applied once in the emulator process.

moto is pinned (pyproject) because this reaches into its 5.2.5 internals:

- Images across accounts, as EC2 does it. moto keeps each account's images to itself;
  here an account also sees other accounts' images in the same region that are public
  or carry a launch permission for it (describe_images by id, Owners, ExecutableUsers),
  and may copy them when it may also read their snapshots (create-volume permission)
  and, for an encrypted snapshot, use its KMS key (a grant or the key policy). Only the
  owner may change or read an image's attributes. copy_image honours Encrypted/KmsKeyId
  and, like EC2, fails the copy (not the call) when it can't use the key.
- Launch-template versions as EC2 makes them: SourceVersion's data is the base of a new
  version; a version that doesn't exist is EC2's error, not moto's HTTP 500.
- KMS: an unknown alias is NotFoundException in every call (moto fails some with 500).
- CodeDeploy fields moto leaves empty (errorInformation, rollbackInfo, targetRevision,
  last deployments), stop_deployment, batch_get_deployment_groups, one active
  deployment per group (DeploymentLimitExceededException), and the deployment targets
  with their lifecycle events (list_deployment_targets, batch_get_deployment_targets).
  The deployments themselves are advanced by builder.local.emulator.codedeploy, which keeps its
  state here.
"""

from __future__ import annotations

import fnmatch
import json
import re
import secrets
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from moto.codedeploy import responses as codedeploy_responses
from moto.codedeploy.exceptions import CodeDeployException
from moto.codedeploy.models import CodeDeployBackend, DeploymentGroup, DeploymentInfo
from moto.codedeploy.responses import CodeDeployResponse
from moto.core.exceptions import JsonRESTError
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ec2.exceptions import (
    EC2ClientError,
    InvalidAMIIdError,
    InvalidLaunchTemplateVersionNotFound,
    MalformedAMIIdError,
    MissingParameterError,
)
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.models.launch_templates import LaunchTemplate
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.responses.launch_templates import LaunchTemplates
from moto.ec2.utils import generic_filter, parse_user_data, random_ami_id
from moto.kms.exceptions import NotFoundException
from moto.kms.models import KmsBackend, kms_backends

_ORIGINAL: dict[str, Any] = {}

# What AWS reports when a copy can't use the source snapshot's key (EBS user guide,
# "Copy an Amazon EBS snapshot": the copy fails silently with this state message).
KEY_NOT_ACCESSIBLE = "Given key ID is not accessible"
DEFAULT_EBS_KEY_ALIAS = "alias/aws/ebs"
FINAL_STATUSES = ("Succeeded", "Failed", "Stopped")
DEPLOYMENT_ID_ALPHABET = string.ascii_uppercase + string.digits
# The lifecycle events of a blue/green deployment's instances, in order: the replacement
# (Green) instances install and take traffic, then the original (Blue) ones lose it.
GREEN_EVENTS = ("ApplicationStop", "DownloadBundle", "BeforeInstall", "Install", "AfterInstall",
                "ApplicationStart", "ValidateService", "BeforeAllowTraffic", "AllowTraffic",
                "AfterAllowTraffic")
BLUE_EVENTS = ("BeforeBlockTraffic", "BlockTraffic", "AfterBlockTraffic")
TARGET_FILTERS = ("TargetStatus", "ServerInstanceLabel")
MAX_TARGET_IDS = 25  # per BatchGetDeploymentTargets call


def apply() -> None:
    """Patch moto's classes; idempotent."""
    if _ORIGINAL:
        return
    _replace(AmiBackend, "describe_images", _describe_images)
    _replace(AmiBackend, "copy_image", _copy_image)
    _replace(AmiBackend, "modify_image_attribute", _modify_image_attribute)
    _replace(AmiBackend, "describe_image_attribute", _describe_image_attribute)
    _replace(AmisResponse, "copy_image", _copy_image_response)
    _replace(Ami, "block_device_mappings", property(_block_device_mappings))
    _replace(LaunchTemplate, "get_version", _get_version)
    _replace(LaunchTemplates, "create_launch_template_version",
             _create_launch_template_version_response)
    _replace(KmsBackend, "any_id_to_key_id", _any_id_to_key_id)
    _replace(CodeDeployResponse, "stop_deployment", _stop_deployment_response)
    _replace(CodeDeployResponse, "batch_get_deployment_groups",
             _batch_get_deployment_groups_response)
    _replace(CodeDeployResponse, "list_deployment_targets", _list_deployment_targets_response)
    _replace(CodeDeployResponse, "batch_get_deployment_targets",
             _batch_get_deployment_targets_response)
    _replace(codedeploy_responses, "_deployment_info", _deployment_info)
    _replace(codedeploy_responses, "_deployment_group_info", _group_info)
    _replace(CodeDeployBackend, "create_deployment", _create_deployment)
    _replace(DeploymentInfo, "__init__", _init_deployment)


def _replace(owner: Any, name: str, new: Any) -> None:
    """Put `new` in place of owner.<name>, keeping the original for `_original`."""
    _ORIGINAL[f"{owner.__name__}.{name}"] = getattr(owner, name, None)
    setattr(owner, name, new)


def _original(owner: Any, name: str) -> Callable[..., Any]:
    original: Callable[..., Any] = _ORIGINAL[f"{owner.__name__}.{name}"]
    return original


def backends(service: Any) -> Iterator[tuple[str, str, Any]]:
    """(account, region, backend) of a moto service that exist (none is made)."""
    yield from service.iter_backends()


# -- images --------------------------------------------------------------------------

def _shared_images(backend: Any) -> Iterator[Any]:
    """Other accounts' images in the backend's region that its account may launch."""
    me = backend.account_id
    for account_id, regions in list(ec2_backends.items()):
        # dict.get: looking must not create a backend for every account and region
        other = dict.get(regions, backend.region_name)
        if account_id == me or other is None:
            continue
        for image in list(other.amis.values()):
            if image.is_public or {"UserId": me} in image.launch_permissions:
                yield image


def _describe_images(self: Any, ami_ids: list[str] | None = None,
                     filters: dict[str, Any] | None = None,
                     exec_users: list[str] | None = None,
                     owners: list[str] | None = None) -> list[Any]:
    """EC2's DescribeImages over the account's own images and those it may launch.

    ExecutableUsers follows EC2: an account id (or `self`) selects images with an
    explicit launch permission for it, `all` the public ones.
    """
    images = [*self.amis.values(), *_shared_images(self)]
    if ami_ids:
        malformed = [ami_id for ami_id in ami_ids if not ami_id.startswith("ami-")]
        if malformed:
            raise MalformedAMIIdError(malformed)
        images = [image for image in images if image.id in ami_ids]
        if not images and not any(ami_id in self.deleted_amis for ami_id in ami_ids):
            raise InvalidAMIIdError(ami_ids)
    if exec_users:
        users = {self.account_id if user == "self" else user for user in exec_users}
        images = [image for image in images
                  if ("all" in users and image.is_public)
                  or any(lp.get("UserId") in users for lp in image.launch_permissions)]
    if owners:
        wanted = {self.account_id if owner == "self" else owner for owner in owners}
        images = [image for image in images
                  if image.owner_id in wanted or image.owner_alias in wanted]
    return generic_filter(filters, images) if filters else images


def _require_own_image(backend: Any, ami_id: str) -> None:
    """EC2's answer to a call only an image's owner may make: AuthFailure for another
    account's image this one may see, not-found for the rest (moto: KeyError, HTTP 500)."""
    if ami_id not in backend.amis:
        if any(image.id == ami_id for image in _shared_images(backend)):
            raise EC2ClientError("AuthFailure", f"Not authorized for image:{ami_id}")
        raise InvalidAMIIdError(ami_id)


def _describe_image_attribute(self: Any, ami_id: str, attribute_name: str) -> Any:
    _require_own_image(self, ami_id)
    return _original(AmiBackend, "describe_image_attribute")(self, ami_id, attribute_name)


def _modify_image_attribute(self: Any, ami_id: str, launch_permissions_to_add: list[Any],
                            launch_permissions_to_remove: list[Any]) -> None:
    """Only the owner changes who may launch an image; an image encrypted with the
    account's AWS-managed key can't be shared (EC2 refuses it too)."""
    _require_own_image(self, ami_id)
    snapshot = self.amis[ami_id].ebs_snapshot
    if launch_permissions_to_add and _is_default_ebs_key(snapshot.kms_key_id, self):
        raise EC2ClientError("InvalidParameter", "Snapshots encrypted with the AWS Managed "
                             "CMK can't be shared. Specify another snapshot.")
    _original(AmiBackend, "modify_image_attribute")(
        self, ami_id, launch_permissions_to_add, launch_permissions_to_remove)


def _copy_image(self: Any, source_image_id: str, source_region: str, name: str | None = None,
                description: str | None = None, encrypted: bool = False,
                kms_key_id: str | None = None) -> Any:
    """CopyImage as EC2 does it, also from another account.

    Another account's image needs its snapshot readable by this account, else EC2
    refuses the call (InvalidRequest). An encrypted snapshot also needs its key usable
    by this account; without that EC2 accepts the copy and fails it afterwards (the
    snapshot copy ends in `error` with "Given key ID is not accessible", the image in
    `failed`), so that is what happens here too. The same goes for a KmsKeyId this
    account can't encrypt with (no such key or alias, disabled, in another region, or
    another account's without a grant): EC2 checks the key only after accepting the
    copy (API reference, CopyImage KmsKeyId: "if you specify an identifier that is not
    valid, the action can appear to complete, but eventually fails").
    """
    source = ec2_backends[self.account_id][source_region].describe_images(
        ami_ids=[source_image_id])[0]
    source_snapshot = source.ebs_snapshot
    foreign = source.owner_id != self.account_id
    if foreign and not _may_read(source_snapshot, self.account_id):
        raise EC2ClientError("InvalidRequest",
                             "You do not have permission to access the storage of this ami")
    copy: Any = Ami(self, random_ami_id(), source_ami=source, name=name, description=description)
    copy.root_device_type = source.root_device_type
    copy.root_device_name = source.root_device_name
    copy.boot_mode = source.boot_mode
    self.amis[copy.id] = copy
    snapshot = copy.ebs_snapshot
    if encrypted or kms_key_id or source_snapshot.encrypted:
        # Copies of encrypted snapshots stay encrypted; without KmsKeyId the copy takes the
        # source key when it may (same account and region), else the account's EBS key.
        same_home = not foreign and source_region == self.region_name
        key = kms_key_id or (source_snapshot.kms_key_id if same_home else None)
        snapshot.encrypted = True
        snapshot.kms_key_id = (_copy_key_arn(self, key) if key
                               else self._create_default_encryption_key())
        usable = snapshot.kms_key_id is not None and (
            not source_snapshot.encrypted or not foreign
            or _may_use_key(source_snapshot.kms_key_id, self.account_id))
        if not usable:
            copy.state = "failed"
            copy.state_reason = {"Code": "Client.InvalidKMSKey.InvalidState",
                                 "Message": f"Copy image failed: {KEY_NOT_ACCESSIBLE}"}
            snapshot.status = "error"
            snapshot.state_message = KEY_NOT_ACCESSIBLE
    return copy


def _copy_image_response(self: Any) -> ActionResult:
    self.error_on_dryrun()
    image = self.ec2_backend.copy_image(
        self._get_param("SourceImageId"), self._get_param("SourceRegion"),
        self._get_param("Name"), self._get_param("Description"),
        encrypted=bool(self._get_bool_param("Encrypted", False)),
        kms_key_id=self._get_param("KmsKeyId"))
    return ActionResult({"ImageId": image.id})


def _block_device_mappings(self: Any) -> list[dict[str, Any]]:
    """moto's mapping, plus the snapshot's encryption (Packer and promote read it)."""
    return [{"DeviceName": self.root_device_name,
             "Ebs": {"SnapshotId": self.ebs_snapshot.id, "VolumeSize": 15,
                     "DeleteOnTermination": True, "VolumeType": "gp3",
                     "Encrypted": bool(self.ebs_snapshot.encrypted)}}]


def _may_read(snapshot: Any, account_id: str) -> bool:
    return (account_id in snapshot.create_volume_permission_userids
            or "all" in snapshot.create_volume_permission_groups)


def _find_key(key_id: str, region: str, account: str) -> Any | None:
    """The KMS key an id, ARN, alias or alias ARN names, in the account and region an ARN
    says, else in `account`/`region`; None when there is no such key. Only the backend of
    `account`/`region` (the caller's own) may be made by looking, as AWS makes the
    AWS-managed keys on first use; other accounts' are only read."""
    home_region, home_account = _key_home(key_id, region, account)
    kms: KmsBackend | None
    if account and (home_region, home_account) == (region, account):
        kms = kms_backends[account][region]
    else:
        regions = dict.get(kms_backends, home_account)
        kms = dict.get(regions, home_region) if regions is not None else None
    if kms is None:
        return None
    try:
        return kms.describe_key(key_id)
    except (JsonRESTError, KeyError, TypeError):  # moto's ways of saying "no such key"
        return None


def _key_home(key_id: str, region: str, account: str) -> tuple[str, str]:
    match = re.fullmatch(r"arn:aws[\w-]*:kms:([\w-]+):(\d{12}):.*", key_id)
    return (match.group(1), match.group(2)) if match else (region, account)


def _copy_key_arn(backend: Any, key_id: str) -> str | None:
    """The ARN of the key a copy is encrypted with, as EC2 records it; None when EC2 can't
    use it here: it must be in the copy's region, enabled, and this account's own or
    usable by it."""
    key = _find_key(key_id, backend.region_name, backend.account_id)
    if key is None or key.region != backend.region_name or key.key_state != "Enabled":
        return None
    if key.account_id != backend.account_id and not _may_use_key(key.arn, backend.account_id):
        return None
    return str(key.arn)


def _is_default_ebs_key(key_id: str | None, backend: Any) -> bool:
    key = _find_key(key_id, backend.region_name, backend.account_id) if key_id else None
    return key is not None and DEFAULT_EBS_KEY_ALIAS in key.aliases


def _may_use_key(key_arn: str, account_id: str) -> bool:
    """Whether an account may decrypt with a key of another account: a grant to one of
    its principals, or a key policy statement allowing it kms:Decrypt."""
    key = _find_key(key_arn, "", "")
    if key is None or key.key_state != "Enabled":
        return False
    if any(_names_account(grant.grantee_principal, account_id)
           and "Decrypt" in grant.operations for grant in key.grants.values()):
        return True
    return any(_allows(statement, account_id) for statement in _statements(key.policy))


def _any_id_to_key_id(self: Any, key_id: str) -> str:
    """KMS's NotFoundException for an alias that names no key (moto: HTTP 500 in
    CreateGrant, ListGrants, RevokeGrant and others)."""
    alias = self.get_alias_name(key_id)
    if alias.startswith("alias/") and self.get_key_id_from_alias(alias) is None:
        raise NotFoundException(
            f"Alias arn:aws:kms:{self.region_name}:{self.account_id}:{alias} is not found.")
    raw_id: str = _original(KmsBackend, "any_id_to_key_id")(self, key_id)
    return raw_id


def _statements(policy: str) -> list[dict[str, Any]]:
    try:
        statements = json.loads(policy).get("Statement", [])
    except (ValueError, AttributeError):
        return []
    return statements if isinstance(statements, list) else [statements]


def _allows(statement: dict[str, Any], account_id: str) -> bool:
    if statement.get("Effect") != "Allow":
        return False
    principal = statement.get("Principal")
    principals = [principal] if isinstance(principal, str) else _as_list(
        (principal or {}).get("AWS"))
    actions = _as_list(statement.get("Action"))
    return (any(_names_account(p, account_id) for p in principals)
            and any(fnmatch.fnmatch("kms:Decrypt", action) for action in actions))


def _names_account(principal: str, account_id: str) -> bool:
    return principal in ("*", account_id) or bool(
        re.match(rf"arn:aws[\w-]*:(iam|sts)::{account_id}:", principal))


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


# -- launch templates ----------------------------------------------------------------

def _get_version(self: Any, number: Any) -> Any:
    """A version by number, $Latest or $Default; anything else is EC2's not-found error
    (moto answers "abc" with HTTP 500 and "0" with the latest version)."""
    spec = str(number)
    if spec.lower() not in ("$latest", "$default") and not (
            spec.isdigit() and 1 <= int(spec) <= len(self.versions)):
        raise InvalidLaunchTemplateVersionNotFound(template_id=self.id, version=spec)
    return _original(LaunchTemplate, "get_version")(self, number)


def _create_launch_template_version_response(self: Any) -> ActionResult:
    """CreateLaunchTemplateVersion as EC2 does it: with SourceVersion the new version
    inherits that version's data and the given LaunchTemplateData overrides it field by
    field (moto ignores SourceVersion: a version giving only ImageId lost the instance
    type and the rest). UserData is kept base64 as CreateLaunchTemplate keeps it, which
    launching from the version needs."""
    template_id, name = self._get_param("LaunchTemplateId"), self._get_param("LaunchTemplateName")
    if not template_id and not name:
        raise MissingParameterError("LaunchTemplateId or LaunchTemplateName")
    template = (self.ec2_backend.get_launch_template(template_id) if template_id
                else self.ec2_backend.get_launch_template_by_name(name))
    data = dict(self._get_param("LaunchTemplateData", {}))
    if "UserData" in data:
        data["UserData"] = parse_user_data(data["UserData"])
    source = self._get_param("SourceVersion")
    if source is not None:
        data = {**template.get_version(source).data, **data}
    self.error_on_dryrun()
    version = template.create_version(data, self._get_param("VersionDescription"))
    return ActionResult({"LaunchTemplateVersion": {
        "CreateTime": version.create_time,
        "CreatedBy": f"arn:{self.partition}:iam::{self.current_account}:root",
        "DefaultVersion": template.is_default(version),
        "LaunchTemplateData": version.data,
        "LaunchTemplateId": template.id,
        "LaunchTemplateName": template.name,
        "VersionDescription": version.description,
        "VersionNumber": version.number,
    }})


def publish_image(owner: str, region: str, name: str, created: datetime, *,
                  image_id: str | None = None, public: bool = True) -> tuple[Any, bool]:
    """An image of `owner` (a vendor account such as Canonical's), launchable and
    copyable by every account when public. Returns (image, made); an image of that
    name (or id) already there is returned as is."""
    backend = ec2_backends[owner][region]
    for existing in [*backend.amis.values(), *_shared_images(backend)]:
        if existing.name == name or existing.id == image_id:
            return existing, False
    image: Any = Ami(backend, image_id or random_ami_id(), name=name, owner_id=owner,
                     public=public, virtualization_type="hvm", architecture="x86_64",
                     root_device_type="ebs", root_device_name="/dev/sda1",
                     creation_date=created, description=f"{name} (local base image)")
    if public:
        image.ebs_snapshot.create_volume_permission_groups.add("all")
    backend.amis[image.id] = image
    return image, True


# -- CodeDeploy ----------------------------------------------------------------------

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
    """What CodeDeploy reports about a deployment group and moto doesn't keep, and the
    failure armed for its next deployment (`builder local fail-next-deployment`)."""

    target_revision: dict[str, Any] | None = None
    last_successful: dict[str, Any] | None = None
    last_attempted: dict[str, Any] | None = None
    fail_next: dict[str, str] | None = None


def deployment_extras(deployment: Any) -> DeploymentExtras:
    """builder's own state kept on a moto deployment (made on first use)."""
    if not hasattr(deployment, "builder_extras"):
        deployment.builder_extras = DeploymentExtras()
    extras: DeploymentExtras = deployment.builder_extras
    return extras


def group_extras(group: Any) -> GroupExtras:
    """builder's own state kept on a moto deployment group (made on first use)."""
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
    """CodeDeploy's error for stopping a deployment that has ended."""

    code = 400

    def __init__(self, deployment_id: str):
        super().__init__("DeploymentAlreadyCompletedException",
                         f"Deployment {deployment_id} has already completed.")


class DeploymentLimitExceededException(CodeDeployException):
    """CodeDeploy's error for a second deployment while one is active."""

    code = 400

    def __init__(self, group: str, deployment_id: str):
        super().__init__("DeploymentLimitExceededException",
                         f"The Deployment Group '{group}' already has an active Deployment "
                         f"'{deployment_id}'")


def _create_deployment(self: Any, application_name: str, deployment_group_name: str,
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
    deployment_id: str = _original(CodeDeployBackend, "create_deployment")(
        self, application_name, deployment_group_name, revision, **kwargs)
    return deployment_id


def _init_deployment(self: Any, *args: Any, **kwargs: Any) -> None:
    """Deployment ids as CodeDeploy writes them (d-XXXXXXXXX), not moto's UUIDs: they end
    up in the names of the replacement Auto Scaling groups."""
    _original(DeploymentInfo, "__init__")(self, *args, **kwargs)
    self.deployment_id = "d-" + "".join(secrets.choice(DEPLOYMENT_ID_ALPHABET)
                                        for _ in range(9))


def _stop_deployment_response(self: Any) -> ActionResult:
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


def _batch_get_deployment_groups_response(self: Any) -> ActionResult:
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


def _list_deployment_targets_response(self: Any) -> ActionResult:
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


def _batch_get_deployment_targets_response(self: Any) -> ActionResult:
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


def _deployment_info(deployment: DeploymentInfo) -> dict[str, Any]:
    extras = deployment_extras(deployment)
    return _with_extras(_original(codedeploy_responses, "_deployment_info")(deployment), {
        "errorInformation": extras.error_information, "rollbackInfo": extras.rollback_info,
        "previousRevision": extras.previous_revision})


def _group_info(group: DeploymentGroup) -> dict[str, Any]:
    extras = group_extras(group)
    info = _with_extras(_original(codedeploy_responses, "_deployment_group_info")(group), {
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
