"""Launch templates and Auto Scaling groups: the typed calls `release` makes.

The user's Terraform owns both; builder only adds launch-template versions, moves the
default, and points the deployment group's current ASG at a version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from builder.aws.session import translate
from builder.errors import AwsError


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
    def from_api(cls, raw: Mapping[str, Any]) -> TemplateVersion:
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


def version(ec2: Any, *, template_name: str = "", template_id: str = "",
            number: str = "$Default") -> TemplateVersion:
    """One version of a template named by name or id: a number, $Default or $Latest.

    A missing template is an AwsError with code InvalidLaunchTemplateName.NotFoundException
    (or InvalidLaunchTemplateId.NotFound); the caller knows which setting named it.
    """
    which = {"LaunchTemplateId": template_id} if template_id else {
        "LaunchTemplateName": template_name}
    with translate(f"reading launch template {template_id or template_name} version {number}"):
        found = ec2.describe_launch_template_versions(**which, Versions=[number])
    versions = found["LaunchTemplateVersions"]
    if not versions:
        raise AwsError(f"launch template {template_id or template_name} has no version {number}",
                       code="InvalidLaunchTemplateVersion.NotFound")
    return TemplateVersion.from_api(versions[0])


def create_version(ec2: Any, source: TemplateVersion, image_id: str,
                   description: str) -> TemplateVersion:
    """A new version copied from `source` with only ImageId changed (AWS merges the given
    data over SourceVersion)."""
    with translate(f"adding a version to launch template {source.template_name}"):
        made = ec2.create_launch_template_version(
            LaunchTemplateId=source.template_id, SourceVersion=str(source.number),
            VersionDescription=description[:255], LaunchTemplateData={"ImageId": image_id},
        )["LaunchTemplateVersion"]
    return TemplateVersion.from_api(made)


def set_default(ec2: Any, template_id: str, number: int) -> None:
    with translate(f"making version {number} the default of launch template {template_id}"):
        ec2.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion=str(number))


def asg_launch(autoscaling: Any, name: str) -> AsgLaunch:
    with translate(f"reading Auto Scaling group {name}"):
        groups = autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[name])["AutoScalingGroups"]
    if not groups:
        raise AwsError(f"Auto Scaling group {name} does not exist", code="AsgNotFound")
    spec = groups[0].get("LaunchTemplate") or {}
    return AsgLaunch(name, spec.get("LaunchTemplateId", ""), str(spec.get("Version", "")))


def point_asg(autoscaling: Any, name: str, template_id: str, version_spec: str) -> None:
    """Make the group launch from `template_id` at `version_spec` (its later instances;
    CodeDeploy copies this spec into the replacement group)."""
    with translate(f"pointing Auto Scaling group {name} at launch template version "
                   f"{version_spec}"):
        autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateId": template_id, "Version": version_spec})
