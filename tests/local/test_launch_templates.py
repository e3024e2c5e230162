"""Launch-template versions as EC2 makes them: a new version inherits SourceVersion's
data and the given fields override it; versions that don't exist are EC2's errors."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from builder.aws import EnvAws, fleet, translate
from builder.errors import AwsError
from builder.project import Project

pytestmark = pytest.mark.local

USER_DATA = base64.b64encode(b"#!/bin/sh\necho hello\n").decode()
NEWER_USER_DATA = base64.b64encode(b"#!/bin/sh\necho again\n").decode()


@pytest.fixture(scope="module")
def dev(local_stack: Project) -> EnvAws:
    return local_stack.env_aws(local_stack.resolve("demo", "dev", "app"))


def version_data(ec2: Any, template_id: str, version: str) -> dict[str, Any]:
    [found] = ec2.describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=[version])["LaunchTemplateVersions"]
    data: dict[str, Any] = found["LaunchTemplateData"]
    return data


def error_code(call: Any) -> str:
    with pytest.raises(AwsError) as failed, translate("calling"):
        call()
    return failed.value.code


def test_a_version_from_a_source_version_changes_only_the_given_fields(dev: EnvAws) -> None:
    ec2 = dev.client("ec2")
    image_id = version_data(ec2, ec2.describe_launch_templates(
        LaunchTemplateNames=["demo-dev-app"])["LaunchTemplates"][0]["LaunchTemplateId"],
        "$Default")["ImageId"]
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    group = ec2.create_security_group(GroupName="web", Description="web",
                                      VpcId=vpc["VpcId"])["GroupId"]
    terraform = {
        "ImageId": image_id, "InstanceType": "t3.small", "SecurityGroupIds": [group],
        "UserData": USER_DATA, "Monitoring": {"Enabled": True},
        "MetadataOptions": {"HttpTokens": "required"},
        "TagSpecifications": [{"ResourceType": "instance",
                               "Tags": [{"Key": "Role", "Value": "web"}]}]}
    template_id = ec2.create_launch_template(
        LaunchTemplateName="source-version-test",
        LaunchTemplateData=terraform)["LaunchTemplate"]["LaunchTemplateId"]
    first = version_data(ec2, template_id, "1")
    newer = ec2.copy_image(SourceImageId=image_id, SourceRegion=dev.region,
                           Name="source-version-test-ami")["ImageId"]

    made = ec2.create_launch_template_version(
        LaunchTemplateId=template_id, SourceVersion="$Default",
        LaunchTemplateData={"ImageId": newer})["LaunchTemplateVersion"]

    assert made["VersionNumber"] == 2
    assert made["LaunchTemplateData"] == {**first, "ImageId": newer}
    assert version_data(ec2, template_id, "2") == {**first, "ImageId": newer}
    assert first["InstanceType"] == "t3.small" and first["SecurityGroupIds"] == [group]
    # A field given replaces the inherited one; $Latest and numbers name sources too.
    third = ec2.create_launch_template_version(
        LaunchTemplateId=template_id, SourceVersion="$Latest",
        LaunchTemplateData={"InstanceType": "t3.large", "UserData": NEWER_USER_DATA},
    )["LaunchTemplateVersion"]
    assert third["LaunchTemplateData"] == {**first, "ImageId": newer, "InstanceType": "t3.large",
                                           "UserData": NEWER_USER_DATA}
    # Without SourceVersion a version holds only what it is given.
    bare = ec2.create_launch_template_version(
        LaunchTemplateName="source-version-test",
        LaunchTemplateData={"ImageId": newer})["LaunchTemplateVersion"]
    assert bare["LaunchTemplateData"] == {"ImageId": newer}
    # Both versions launch, with inherited and with given user data.
    for version, instance_type in (("2", "t3.small"), ("3", "t3.large")):
        launched = ec2.run_instances(MinCount=1, MaxCount=1, LaunchTemplate={
            "LaunchTemplateId": template_id, "Version": version})["Instances"][0]
        assert (launched["ImageId"], launched["InstanceType"]) == (newer, instance_type)
        ec2.terminate_instances(InstanceIds=[launched["InstanceId"]])

    # builder's own call: a copy of the default with only the AMI changed.
    source = fleet.version(ec2, template_id=template_id, number="1")
    released = fleet.create_version(ec2, source, newer, "builder: test")
    assert version_data(ec2, template_id, str(released.number)) == {**first, "ImageId": newer}


def test_versions_that_do_not_exist_are_refused(dev: EnvAws) -> None:
    ec2 = dev.client("ec2")
    template_id = ec2.describe_launch_templates(
        LaunchTemplateNames=["demo-dev-worker"])["LaunchTemplates"][0]["LaunchTemplateId"]
    for version in ("abc", "0", "99"):
        assert error_code(lambda version=version: ec2.describe_launch_template_versions(
            LaunchTemplateId=template_id, Versions=[version])) == (
                "InvalidLaunchTemplateId.VersionNotFound"), version
    assert error_code(lambda: ec2.create_launch_template_version(
        LaunchTemplateId=template_id, SourceVersion="99",
        LaunchTemplateData={"InstanceType": "t3.large"})) == (
            "InvalidLaunchTemplateId.VersionNotFound")
    assert error_code(lambda: ec2.create_launch_template_version(
        LaunchTemplateData={"InstanceType": "t3.large"})) == "MissingParameter"
