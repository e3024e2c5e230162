"""Launch-template versions as EC2 makes them: SourceVersion's data is the base of a new
version, and a version that doesn't exist is EC2's error, not moto's HTTP 500.
"""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import InvalidLaunchTemplateVersionNotFound, MissingParameterError
from moto.ec2.models.launch_templates import LaunchTemplate
from moto.ec2.utils import parse_user_data

from builder.local.emulator.moto_internals import original


def get_version(self: Any, number: Any) -> Any:
    """A version by number, $Latest or $Default; anything else is EC2's not-found error
    (moto answers "abc" with HTTP 500 and "0" with the latest version)."""
    spec = str(number)
    if spec.lower() not in ("$latest", "$default") and not (
            spec.isdigit() and 1 <= int(spec) <= len(self.versions)):
        raise InvalidLaunchTemplateVersionNotFound(template_id=self.id, version=spec)
    return original(LaunchTemplate, "get_version")(self, number)


def create_launch_template_version_response(self: Any) -> ActionResult:
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
