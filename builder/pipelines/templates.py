"""Which AMIs launch templates launch, read in bulk: every template's default version
in one query (rebuild, status), every version of one template (prune). Single
versions are read with builder.aws.fleet, as releases do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from builder.aws import fleet, translate
from builder.aws.fleet import TemplateVersion
from builder.errors import AwsError

# EC2's largest page for DescribeLaunchTemplateVersions.
_PAGE = 200
_NOT_FOUND = ("InvalidLaunchTemplateName.NotFoundException", "InvalidLaunchTemplateId.NotFound",
              "InvalidLaunchTemplateId.Malformed", "InvalidLaunchTemplateVersion.NotFound")


def _paged(ec2: Any, doing: str, **kwargs: Any) -> list[TemplateVersion]:
    with translate(doing):
        pages = ec2.get_paginator("describe_launch_template_versions").paginate(
            **kwargs, PaginationConfig={"PageSize": _PAGE})
        return [TemplateVersion.from_api(raw)
                for page in pages for raw in page["LaunchTemplateVersions"]]


def every_template(ec2: Any, which: tuple[str, ...] = ("$Default",)) -> list[TemplateVersion]:
    """The `which` versions ($Default, $Latest) of every launch template of the account
    and region, in one query."""
    return _paged(ec2, "reading the launch templates", Versions=list(which))


def default_images(ec2: Any) -> dict[str, str]:
    """Template name → the AMI of its default version, for every launch template."""
    return {v.template_name: v.image_id for v in every_template(ec2)}


def all_versions(ec2: Any, name: str) -> list[TemplateVersion]:
    """Every version of one template; none when it doesn't exist."""
    try:
        return _paged(ec2, f"reading the versions of launch template {name}",
                      LaunchTemplateName=name)
    except AwsError as exc:
        if exc.code in _NOT_FOUND:
            return []
        raise


def default_image(ec2: Any, name: str) -> str:
    """The AMI of a template's default version ("" when there is no such template)."""
    return launched_image(ec2, {"LaunchTemplateName": name})


def launched_image(ec2: Any, spec: Mapping[str, Any]) -> str:
    """The AMI a launch template specification (as an Auto Scaling group holds it)
    launches; "" when its template or version is gone."""
    try:
        return fleet.version(ec2, template_id=spec.get("LaunchTemplateId", ""),
                             template_name=spec.get("LaunchTemplateName", ""),
                             number=str(spec.get("Version") or "$Default")).image_id
    except AwsError as exc:
        if exc.code in _NOT_FOUND:
            return ""
        raise
