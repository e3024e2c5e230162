"""What release tests make and read in the local emulator.

AMIs as a bake (or a promotion) leaves them, without Packer: an instance of the env's
base image, an image of it, builder's lineage tags. And the state a release changes:
the deployment group's ASG, the launch template default, the AMI's tags."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from builder.aws import images
from builder.bake.regions import copy_to_regions, retag
from builder.config.models import Combo
from builder.interrupts import Cancel
from builder.local.stack import date_image
from builder.project import Project


class Lines:
    """A progress sink that keeps the lines (and shows them with -s)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, subject: str, message: str) -> None:
        self.lines.append(f"{subject}: {message}")
        print(f"{subject}: {message}")


def make_ami(project: Project, combo: Combo, *, status: str = images.AmiStatus.BAKED,
             tags: Mapping[str, str] | None = None, created: datetime | None = None) -> str:
    """An available AMI in the combo's env account, tagged for `combo` (or `tags`), made
    at `created` (default: now)."""
    resolved = project.resolve(combo.app, combo.env, combo.comp)
    ec2 = project.env_aws(resolved).client("ec2")
    source = images.resolve_source(ec2, resolved.settings)
    instance = ec2.run_instances(ImageId=source.id, MinCount=1, MaxCount=1,
                                 InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    build_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"
    name = f"{combo.app}-{combo.env}-{combo.comp}-{build_id}"
    ami_id: str = ec2.create_image(InstanceId=instance, Name=name)["ImageId"]
    ec2.terminate_instances(InstanceIds=[instance])
    if created:
        date_image(project, combo.app, combo.env, combo.comp, ami_id, created)
    image = images.describe(ec2, image_ids=[ami_id])[0]
    images.set_tags(ec2, image, {
        "Name": name, images.TAG_APP: combo.app, images.TAG_ENV: combo.env,
        images.TAG_COMP: combo.comp, images.TAG_STATUS: status,
        images.TAG_SOURCE_AMI: source.id, images.TAG_BUILD_ID: build_id,
        images.TAG_BUILT_AT: datetime.now(UTC).isoformat(timespec="seconds"),
        **(tags or {})})
    return ami_id


def make_failed_copy(project: Project, combo: Combo, source_env: str) -> str:
    """An AMI in state `failed`, tagged for `combo`: a copy of an image encrypted with a
    key of `source_env`'s account that the combo's account may not use (EC2 fails such a
    copy after accepting it)."""
    source_resolved = project.resolve(combo.app, source_env, combo.comp)
    source_ec2 = project.env_aws(source_resolved).client("ec2")
    plain = make_ami(project, Combo(combo.app, source_env, combo.comp))
    encrypted = source_ec2.copy_image(
        SourceImageId=plain, SourceRegion=source_resolved.settings.aws_region,
        Name=f"{plain}-encrypted", Encrypted=True,
        KmsKeyId=source_resolved.settings.kms_key)["ImageId"]
    snapshot = images.describe(source_ec2, image_ids=[encrypted])[0].snapshot_ids[0]
    account = project.resolve(combo.app, combo.env, combo.comp).settings.aws_account_id
    source_ec2.modify_image_attribute(ImageId=encrypted,
                                      LaunchPermission={"Add": [{"UserId": account}]})
    source_ec2.modify_snapshot_attribute(SnapshotId=snapshot,
                                         Attribute="createVolumePermission",
                                         OperationType="add", UserIds=[account])
    resolved = project.resolve(combo.app, combo.env, combo.comp)
    ec2 = project.env_aws(resolved).client("ec2")
    copy_id: str = ec2.copy_image(SourceImageId=encrypted,
                                  SourceRegion=source_resolved.settings.aws_region,
                                  Name=f"{combo.app}-{combo.env}-{combo.comp}-copy")["ImageId"]
    images.set_tags(ec2, images.describe(ec2, image_ids=[copy_id])[0], {
        images.TAG_APP: combo.app, images.TAG_ENV: combo.env, images.TAG_COMP: combo.comp,
        images.TAG_STATUS: images.AmiStatus.BAKED})
    return copy_id


@dataclass(frozen=True)
class FleetState:
    """A combo's deployment group, its ASG and the launch template, as they are now."""

    asg: str
    asg_version: str
    default_version: int
    default_image: str
    versions: int
    last_successful: str
    last_attempted: str


def clients(project: Project, combo: Combo) -> tuple[Any, Any, Any]:
    env_aws = project.env_aws(project.resolve(combo.app, combo.env, combo.comp))
    return env_aws.client("ec2"), env_aws.client("autoscaling"), env_aws.client("codedeploy")


def fleet_state(project: Project, combo: Combo) -> FleetState:
    settings = project.resolve(combo.app, combo.env, combo.comp).settings
    ec2, autoscaling, codedeploy = clients(project, combo)
    group = codedeploy.get_deployment_group(
        applicationName=settings.codedeploy_application,
        deploymentGroupName=settings.codedeploy_deployment_group)["deploymentGroupInfo"]
    [asg_ref] = group["autoScalingGroups"]
    asg = autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[asg_ref["name"]])["AutoScalingGroups"][0]
    versions = ec2.describe_launch_template_versions(
        LaunchTemplateName=settings.launch_template_name)["LaunchTemplateVersions"]
    default = next(v for v in versions if v["DefaultVersion"])
    return FleetState(asg["AutoScalingGroupName"], asg["LaunchTemplate"]["Version"],
                      default["VersionNumber"], default["LaunchTemplateData"]["ImageId"],
                      len(versions), group["lastSuccessfulDeployment"]["deploymentId"],
                      group["lastAttemptedDeployment"]["deploymentId"])


def image_tags(project: Project, combo: Combo, ami_id: str) -> dict[str, str]:
    ec2 = clients(project, combo)[0]
    return dict(images.describe(ec2, image_ids=[ami_id])[0].tags)


# -- a multi-region env -------------------------------------------------------------

MULTI_REGION_APP = Combo("demo", "prod", "app")
REGIONS = ("eu-central-1", "us-east-1", "us-west-2")
KEYS = {"eu-central-1": "alias/demo-prod-ami", "us-east-1": "alias/demo-prod-ami-use1",
        "us-west-2": "alias/demo-prod-ami-usw2"}


def make_multi_region(root: Path) -> None:
    """prod in three regions, a key in each."""
    path = root / "vars/demo/prod/common.yml"
    text = path.read_text().replace("aws_region: eu-central-1\n",
                                    f"aws_regions: [{', '.join(REGIONS)}]\n")
    text = text.replace('kms_key_id: "alias/demo-prod-ami"\n', "kms_key_id:\n" + "".join(
        f"  {region}: {key}\n" for region, key in KEYS.items()))
    path.write_text(text)


def ec2_in(project: Project, combo: Combo, region: str) -> Any:
    resolved = project.resolve(combo.app, combo.env, combo.comp).in_region(region)
    return project.env_aws(resolved).client("ec2")


def default_image(project: Project, combo: Combo, region: str) -> str:
    name = project.resolve(combo.app, combo.env, combo.comp).settings.launch_template_name
    versions = ec2_in(project, combo, region).describe_launch_template_versions(
        LaunchTemplateName=name, Versions=["$Default"])["LaunchTemplateVersions"]
    return str(versions[0]["LaunchTemplateData"]["ImageId"])


def baked_everywhere(project: Project, combo: Combo = MULTI_REGION_APP) -> dict[str, str]:
    """An AMI of the bake region as a bake leaves it, copied to the other regions by the
    bake's own copy step; its id in each region."""
    ami = make_ami(project, combo, status=images.AmiStatus.BUILDING,
                   tags={images.TAG_FINGERPRINT: uuid.uuid4().hex})
    ec2 = ec2_in(project, combo, REGIONS[0])
    image = images.describe(ec2, image_ids=[ami])[0]
    resolved = project.resolve(combo.app, combo.env, combo.comp)
    copies = copy_to_regions(project, resolved, image, progress=Lines(), cancel=Cancel())
    done = {images.TAG_STATUS: images.AmiStatus.BAKED}
    retag(project, resolved, copies, done)
    images.set_tags(ec2, image, done)
    return {REGIONS[0]: ami, **{copy.region: copy.ami_id for copy in copies}}


