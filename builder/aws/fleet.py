"""Launch templates, Auto Scaling groups and their instances: the typed calls of
`release` (one version, one group) and the bulk reads of `rebuild`, `status` and
`prune` (every template's default in one query, every version of one template, every
group and what it launches).

The user's Terraform owns templates and groups; builder only adds launch-template
versions, moves the default, points the deployment group's current ASG at a version,
and (instance_refresh) starts, follows, cancels and rolls back the ASG's instance
refreshes, and (blue_green_existing) sizes the two standing groups of a pair.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Unpack

from builder.aws.session import translate
from builder.errors import AwsError

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_autoscaling.type_defs import (
        AutoScalingGroupTypeDef,
        FilterTypeDef,
        InstanceRefreshTypeDef,
        LaunchTemplateSpecificationTypeDef,
        RefreshPreferencesTypeDef,
    )
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import (
        DescribeLaunchTemplateVersionsRequestPaginateTypeDef,
        LaunchTemplateVersionTypeDef,
    )

# EC2's largest page for DescribeLaunchTemplateVersions.
_VERSIONS_PAGE = 200
# What EC2 answers when a template, or the version asked for, isn't there.
_TEMPLATE_NOT_FOUND = (
    "InvalidLaunchTemplateName.NotFoundException", "InvalidLaunchTemplateId.NotFound",
    "InvalidLaunchTemplateId.Malformed", "InvalidLaunchTemplateVersion.NotFound")
_LIVE_INSTANCE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")


@dataclass(frozen=True)
class TemplateVersion:
    """One launch-template version, as far as a release cares."""

    template_id: str
    template_name: str
    number: int
    image_id: str
    description: str
    is_default: bool

    @classmethod
    def from_api(cls, raw: LaunchTemplateVersionTypeDef) -> TemplateVersion:
        return cls(template_id=raw["LaunchTemplateId"],
                   template_name=raw.get("LaunchTemplateName", ""),
                   number=int(raw["VersionNumber"]),
                   image_id=raw.get("LaunchTemplateData", {}).get("ImageId", ""),
                   description=raw.get("VersionDescription", ""),
                   is_default=bool(raw.get("DefaultVersion")))


@dataclass(frozen=True)
class AsgLaunch:
    """An Auto Scaling group and the launch template (version) it launches from.

    `template_id` is empty when the group launches from something else (a launch
    configuration, a mixed instances policy): release can't move those.
    """

    name: str
    template_id: str
    version: str  # a number, "$Default" or "$Latest", as the group names it
    min_size: int = 0
    desired: int = 0
    max_size: int = 0
    instances: int = 0  # in service or on their way, as the group lists them

    @property
    def idle(self) -> bool:
        """Nothing runs and nothing is asked to."""
        return self.desired == 0 and self.instances == 0

    @classmethod
    def from_api(cls, raw: AutoScalingGroupTypeDef) -> AsgLaunch:
        spec = raw.get("LaunchTemplate") or {}
        return cls(raw["AutoScalingGroupName"], spec.get("LaunchTemplateId", ""),
                   str(spec.get("Version", "")), min_size=raw["MinSize"],
                   desired=raw["DesiredCapacity"], max_size=raw["MaxSize"],
                   instances=len(raw.get("Instances", [])))


def version(ec2: EC2Client, *, template_name: str = "", template_id: str = "",
            number: str = "$Default") -> TemplateVersion:
    """One version of a template named by name or id: a number, $Default or $Latest.

    A missing template is an AwsError with code InvalidLaunchTemplateName.NotFoundException
    (or InvalidLaunchTemplateId.NotFound); the caller knows which setting named it.
    """
    with translate(f"reading launch template {template_id or template_name} version {number}"):
        found = (ec2.describe_launch_template_versions(LaunchTemplateId=template_id,
                                                       Versions=[number]) if template_id else
                 ec2.describe_launch_template_versions(LaunchTemplateName=template_name,
                                                       Versions=[number]))
    versions = found["LaunchTemplateVersions"]
    if not versions:
        raise AwsError(f"launch template {template_id or template_name} has no version {number}",
                       code="InvalidLaunchTemplateVersion.NotFound")
    return TemplateVersion.from_api(versions[0])


def create_version(ec2: EC2Client, source: TemplateVersion, image_id: str,
                   description: str) -> TemplateVersion:
    """A new version copied from `source` with only ImageId changed (AWS merges the given
    data over SourceVersion)."""
    with translate(f"adding a version to launch template {source.template_name}"):
        made = ec2.create_launch_template_version(
            LaunchTemplateId=source.template_id, SourceVersion=str(source.number),
            VersionDescription=description[:255], LaunchTemplateData={"ImageId": image_id},
        )["LaunchTemplateVersion"]
    return TemplateVersion.from_api(made)


def set_default(ec2: EC2Client, template_id: str, number: int) -> None:
    """Make version `number` the launch template's default."""
    with translate(f"making version {number} the default of launch template {template_id}"):
        ec2.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion=str(number))


def asg_launch(autoscaling: AutoScalingClient, name: str) -> AsgLaunch:
    """Which launch template and version an Auto Scaling group launches."""
    with translate(f"reading Auto Scaling group {name}"):
        groups = autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[name])["AutoScalingGroups"]
    if not groups:
        raise AwsError(f"Auto Scaling group {name} does not exist", code="AsgNotFound")
    return AsgLaunch.from_api(groups[0])


def asgs(autoscaling: AutoScalingClient, names: Sequence[str] = (),
         tags: Mapping[str, str] | None = None, tag_keys: Sequence[str] = ()
         ) -> list[AsgLaunch]:
    """The Auto Scaling groups of these names (those that exist), or those carrying these
    tags (values) and tag keys, in one call (a pair is far below a page)."""
    filters: list[FilterTypeDef] = [{"Name": f"tag:{key}", "Values": [value]}
                                    for key, value in (tags or {}).items()]
    filters += [{"Name": "tag-key", "Values": [key]} for key in tag_keys]
    with translate("reading Auto Scaling groups " + (", ".join(names) or "by tag")):
        found = (autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=list(names))
                 if names else autoscaling.describe_auto_scaling_groups(Filters=filters))
    return [AsgLaunch.from_api(raw) for raw in found["AutoScalingGroups"]]


def size_asg(autoscaling: AutoScalingClient, name: str, *, min_size: int, desired: int,
             max_size: int, template_id: str = "", version_spec: str = "") -> None:
    """Set the group's sizes, and its launch template version when given, in one call
    (instances it launches for the new size start from that version)."""
    with translate(f"sizing Auto Scaling group {name} to {desired} ({min_size}-{max_size})"
                   + (f" at launch template version {version_spec}" if version_spec else "")):
        if template_id:
            autoscaling.update_auto_scaling_group(
                AutoScalingGroupName=name, MinSize=min_size, DesiredCapacity=desired,
                MaxSize=max_size,
                LaunchTemplate={"LaunchTemplateId": template_id, "Version": version_spec})
        else:
            autoscaling.update_auto_scaling_group(
                AutoScalingGroupName=name, MinSize=min_size, DesiredCapacity=desired,
                MaxSize=max_size)


def point_asg(autoscaling: AutoScalingClient, name: str, template_id: str,
              version_spec: str) -> None:
    """Make the group launch from `template_id` at `version_spec` (its later instances;
    CodeDeploy copies this spec into the replacement group)."""
    with translate(f"pointing Auto Scaling group {name} at launch template version "
                   f"{version_spec}"):
        autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateId": template_id, "Version": version_spec})


# -- instance refreshes (instance_refresh) ------------------------------------------------

REFRESH_ACTIVE = ("Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking")
REFRESH_SUCCESSFUL = "Successful"
REFRESH_ROLLED_BACK = "RollbackSuccessful"
# What Auto Scaling answers when there is no refresh to cancel or roll back, or the one
# there can't be rolled back.
_NO_REFRESH = ("ActiveInstanceRefreshNotFound", "IrreversibleInstanceRefresh")


@dataclass(frozen=True)
class Refresh:
    """One instance refresh of an Auto Scaling group, as far as a release cares."""

    id: str
    status: str
    reason: str
    percent: int  # of the instances replaced (of those put back, while rolling back)
    to_update: int
    template_id: str  # DesiredConfiguration's launch template ("": none given)
    version: str  # ... and version
    checkpoints: tuple[int, ...]  # the percentages it pauses at

    @property
    def done(self) -> bool:
        return self.status not in REFRESH_ACTIVE

    @classmethod
    def from_api(cls, raw: InstanceRefreshTypeDef) -> Refresh:
        template = (raw.get("DesiredConfiguration") or {}).get("LaunchTemplate") or {}
        rollback = raw.get("RollbackDetails") or {}
        rolling_back = raw.get("Status") in ("RollbackInProgress", REFRESH_ROLLED_BACK)
        reason = raw.get("StatusReason", "")
        if rollback.get("RollbackReason") and rollback["RollbackReason"] not in reason:
            reason = f"{reason}; rolled back: {rollback['RollbackReason']}".lstrip("; ")
        return cls(
            id=raw.get("InstanceRefreshId", ""), status=raw.get("Status", ""), reason=reason,
            percent=int((rollback.get("PercentageCompleteOnRollback") if rolling_back
                         else raw.get("PercentageComplete")) or 0),
            to_update=int((rollback.get("InstancesToUpdateOnRollback") if rolling_back
                           else raw.get("InstancesToUpdate")) or 0),
            template_id=template.get("LaunchTemplateId", ""),
            version=str(template.get("Version", "")),
            checkpoints=tuple(int(p) for p in (raw.get("Preferences") or {}).get(
                "CheckpointPercentages") or ()))


def start_refresh(autoscaling: AutoScalingClient, name: str, template_id: str, number: int, *,
                  min_healthy_percent: int, checkpoints: tuple[int, ...] = (),
                  alarms: tuple[str, ...] = ()) -> str:
    """Start replacing the group's instances with ones of launch template version
    `number` (the group launches that version once the refresh succeeds); a failure
    (alarms included) rolls back to the group's configuration before it. Returns its id."""
    preferences: RefreshPreferencesTypeDef = {
        "MinHealthyPercentage": min_healthy_percent, "AutoRollback": True}
    if checkpoints:
        preferences["CheckpointPercentages"] = list(checkpoints)
    if alarms:
        preferences["AlarmSpecification"] = {"Alarms": list(alarms)}
    with translate(f"starting an instance refresh of Auto Scaling group {name} to launch "
                   f"template version {number}"):
        refresh_id: str = autoscaling.start_instance_refresh(
            AutoScalingGroupName=name, Strategy="Rolling", Preferences=preferences,
            DesiredConfiguration={"LaunchTemplate": {
                "LaunchTemplateId": template_id, "Version": str(number)}},
        )["InstanceRefreshId"]
    return refresh_id


def refreshes(autoscaling: AutoScalingClient, name: str,
              ids: tuple[str, ...] = ()) -> list[Refresh]:
    """The group's instance refreshes, newest first (the last ones AWS keeps), or those
    of `ids`."""
    with translate(f"reading the instance refreshes of Auto Scaling group {name}"):
        found = (autoscaling.describe_instance_refreshes(
            AutoScalingGroupName=name, InstanceRefreshIds=list(ids)) if ids else
            autoscaling.describe_instance_refreshes(AutoScalingGroupName=name))
    return [Refresh.from_api(raw) for raw in found["InstanceRefreshes"]]


def refresh(autoscaling: AutoScalingClient, name: str, refresh_id: str) -> Refresh:
    """One instance refresh of the group."""
    found = refreshes(autoscaling, name, (refresh_id,))
    if not found:
        raise AwsError(f"Auto Scaling group {name} has no instance refresh {refresh_id}",
                       code="InstanceRefreshNotFound")
    return found[0]


def roll_back_refresh(autoscaling: AutoScalingClient, name: str) -> bool:
    """Stop the group's refresh in progress and put back the instances it replaced;
    False when there is none or it can't be rolled back."""
    return _stop_refresh(f"rolling back the instance refresh of Auto Scaling group {name}",
                         lambda: autoscaling.rollback_instance_refresh(AutoScalingGroupName=name))


def cancel_refresh(autoscaling: AutoScalingClient, name: str) -> bool:
    """Stop the group's refresh in progress where it is; False when there is none."""
    return _stop_refresh(f"cancelling the instance refresh of Auto Scaling group {name}",
                         lambda: autoscaling.cancel_instance_refresh(AutoScalingGroupName=name))


def _stop_refresh(doing: str, call: Callable[[], object]) -> bool:
    try:
        with translate(doing):
            call()
    except AwsError as exc:
        if exc.code in _NO_REFRESH:
            return False
        raise
    return True


# -- bulk reads (rebuild, status, prune) ------------------------------------------------


@dataclass(frozen=True)
class AsgLaunchSpecs:
    """Everything an Auto Scaling group launches from: launch template specifications
    (its own, its mixed instances policy's and their overrides, each instance's) and
    its launch configuration."""

    name: str
    templates: tuple[LaunchTemplateSpecificationTypeDef, ...]
    configuration: str  # launch configuration name, or ""
    instance_ids: tuple[str, ...]


def _versions(ec2: EC2Client, doing: str,
              **which: Unpack[DescribeLaunchTemplateVersionsRequestPaginateTypeDef]
              ) -> list[TemplateVersion]:
    request: DescribeLaunchTemplateVersionsRequestPaginateTypeDef = {
        **which, "PaginationConfig": {"PageSize": _VERSIONS_PAGE}}
    with translate(doing):
        pages = ec2.get_paginator("describe_launch_template_versions").paginate(**request)
        return [TemplateVersion.from_api(raw)
                for page in pages for raw in page["LaunchTemplateVersions"]]


def every_template(ec2: EC2Client, which: tuple[str, ...] = ("$Default",)) -> list[TemplateVersion]:
    """The `which` versions ($Default, $Latest) of every launch template of the account
    and region, in one query."""
    return _versions(ec2, "reading the launch templates", Versions=list(which))


def default_images(ec2: EC2Client) -> dict[str, str]:
    """Template name → the AMI of its default version, for every launch template."""
    return {v.template_name: v.image_id for v in every_template(ec2)}


def all_versions(ec2: EC2Client, name: str) -> list[TemplateVersion]:
    """Every version of one template; none when it doesn't exist."""
    try:
        return _versions(ec2, f"reading the versions of launch template {name}",
                         LaunchTemplateName=name)
    except AwsError as exc:
        if exc.code in _TEMPLATE_NOT_FOUND:
            return []
        raise


def default_image(ec2: EC2Client, name: str) -> str:
    """The AMI of a template's default version ("" when there is no such template)."""
    return launched_image(ec2, {"LaunchTemplateName": name})


def launched_image(ec2: EC2Client, spec: LaunchTemplateSpecificationTypeDef) -> str:
    """The AMI a launch template specification (as an Auto Scaling group holds it)
    launches; "" when its template or version is gone."""
    try:
        return version(ec2, template_id=spec.get("LaunchTemplateId", ""),
                       template_name=spec.get("LaunchTemplateName", ""),
                       number=str(spec.get("Version") or "$Default")).image_id
    except AwsError as exc:
        if exc.code in _TEMPLATE_NOT_FOUND:
            return ""
        raise


def every_asg(autoscaling: AutoScalingClient) -> list[AsgLaunchSpecs]:
    """Every Auto Scaling group of the account and region and what it launches from."""
    with translate("listing the Auto Scaling groups"):
        groups = [g for page in autoscaling.get_paginator("describe_auto_scaling_groups")
                  .paginate() for g in page["AutoScalingGroups"]]
    found = []
    for group in groups:
        mixed = (group.get("MixedInstancesPolicy") or {}).get("LaunchTemplate") or {}
        specs = [group.get("LaunchTemplate"), mixed.get("LaunchTemplateSpecification"),
                 *(o.get("LaunchTemplateSpecification") for o in mixed.get("Overrides") or []),
                 *(i.get("LaunchTemplate") for i in group.get("Instances", []))]
        found.append(AsgLaunchSpecs(
            group["AutoScalingGroupName"], tuple(spec for spec in specs if spec),
            group.get("LaunchConfigurationName") or "",
            tuple(i["InstanceId"] for i in group.get("Instances", []))))
    return found


def configuration_images(autoscaling: AutoScalingClient, names: Iterable[str]) -> dict[str, str]:
    """Launch configuration name → its AMI."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    with translate("reading launch configurations"):
        pages = autoscaling.get_paginator("describe_launch_configurations").paginate(
            LaunchConfigurationNames=wanted)
        return {c["LaunchConfigurationName"]: c.get("ImageId", "")
                for page in pages for c in page["LaunchConfigurations"]}


def instances_of(ec2: EC2Client, image_ids: Iterable[str]) -> dict[str, str]:
    """Instance id → AMI, for the live (not terminated) instances of these AMIs."""
    wanted = sorted(image_ids)
    if not wanted:
        return {}
    with translate("finding instances of the AMIs"):
        pages = ec2.get_paginator("describe_instances").paginate(Filters=[
            {"Name": "image-id", "Values": wanted},
            {"Name": "instance-state-name", "Values": list(_LIVE_INSTANCE_STATES)}])
        return {i["InstanceId"]: i["ImageId"] for page in pages
                for r in page["Reservations"] for i in r["Instances"]}
