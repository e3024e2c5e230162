"""Every change the emulator makes to moto, listed once and applied once in the emulator
process (`apply`, called by builder.local.emulator.server before it serves).

They reach into moto 5.2.5's internals, which is why moto is pinned to that version in
pyproject's `local` extra (`moto[server]==5.2.5`); a new pin means checking each entry
below against the new moto. The replacements live with their service: ec2_images,
image_lifecycle, ec2_tags, launch_templates, kms, ssm, codedeploy_state and
autoscaling_refresh. The deployments themselves are run by
builder.local.emulator.codedeploy, which patches nothing; the instance refreshes by
autoscaling_refresh's thread.
"""

from __future__ import annotations

from moto.autoscaling.responses import AutoScalingResponse
from moto.codedeploy import responses as codedeploy_responses
from moto.codedeploy.models import CodeDeployBackend, DeploymentInfo
from moto.codedeploy.responses import CodeDeployResponse
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.models.instances import InstanceBackend
from moto.ec2.models.launch_templates import LaunchTemplate
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.responses.launch_templates import LaunchTemplates
from moto.kms.models import KmsBackend
from moto.ssm.responses import SimpleSystemManagerResponse

from builder.local.emulator import (
    autoscaling_refresh,
    codedeploy_state,
    ec2_images,
    ec2_tags,
    image_lifecycle,
    kms,
    launch_templates,
    ssm,
)
from builder.local.emulator.moto_internals import Patch, install

MOTO_VERSION = "5.2.5"

PATCHES: tuple[Patch, ...] = (
    # EC2 images
    Patch(AmiBackend, "describe_images", ec2_images.describe_images,
          "moto shows an account only its own images; EC2 also shows other accounts' "
          "public images and those with a launch permission for it"),
    Patch(AmiBackend, "copy_image", ec2_images.copy_image,
          "moto copies only the account's own images and ignores encryption; EC2 copies "
          "shared images whose snapshots and key it may use, and fails the copy (not the "
          "call) when it can't use the key"),
    Patch(AmisResponse, "copy_image", ec2_images.copy_image_response,
          "moto drops Encrypted and KmsKeyId from the request"),
    Patch(AmiBackend, "modify_image_attribute", ec2_images.modify_image_attribute,
          "only the owner may change launch permissions (moto: HTTP 500 for others), and "
          "an image under the AWS-managed EBS key can't be shared"),
    Patch(AmiBackend, "describe_image_attribute", ec2_images.describe_image_attribute,
          "only the owner may read attributes (moto: HTTP 500 for others)"),
    Patch(Ami, "block_device_mappings", property(ec2_images.block_device_mappings),
          "moto leaves out the snapshot's Encrypted flag, which Packer and promote read"),
    # EC2 images: protection, deprecation, last launch (image_lifecycle says what AWS does)
    Patch(Ami, "deregistration_protection", "disabled",
          "moto has no deregistration protection (DescribeImages' DeregistrationProtection)"),
    Patch(Ami, "deprecation_time", None, "moto has no deprecation time"),
    Patch(Ami, "last_launched_time", None, "moto doesn't note an image's last launch"),
    Patch(AmiBackend, "deregister_image", image_lifecycle.deregister_image,
          "EC2 refuses to deregister a protected image"),
    Patch(AmisResponse, "enable_image_deregistration_protection",
          image_lifecycle.enable_protection_response,
          "moto has no EnableImageDeregistrationProtection"),
    Patch(AmisResponse, "disable_image_deregistration_protection",
          image_lifecycle.disable_protection_response,
          "moto has no DisableImageDeregistrationProtection"),
    Patch(AmisResponse, "enable_image_deprecation", image_lifecycle.enable_deprecation_response,
          "moto has no EnableImageDeprecation"),
    Patch(AmisResponse, "disable_image_deprecation",
          image_lifecycle.disable_deprecation_response, "moto has no DisableImageDeprecation"),
    Patch(InstanceBackend, "run_instances", image_lifecycle.run_instances,
          "moto doesn't set an image's LastLaunchedTime when an instance launches from it"),
    Patch(TaggedEC2Resource, "get_tags", ec2_tags.get_tags,
          "moto finds one resource's tags by scanning every tag of the region, so a "
          "describe over hundreds of tagged images is quadratic (seconds, not EC2's "
          "milliseconds)"),
    # Launch templates
    Patch(LaunchTemplate, "get_version", launch_templates.get_version,
          "moto answers a version that doesn't exist with HTTP 500 (or, for 0, the latest) "
          "instead of EC2's not-found error"),
    Patch(LaunchTemplates, "create_launch_template_version",
          launch_templates.create_launch_template_version_response,
          "moto ignores SourceVersion: the new version loses the fields it doesn't give"),
    # Auto Scaling instance refreshes
    Patch(AutoScalingResponse, "start_instance_refresh", autoscaling_refresh.start_instance_refresh,
          "moto has no StartInstanceRefresh"),
    Patch(AutoScalingResponse, "describe_instance_refreshes",
          autoscaling_refresh.describe_instance_refreshes, "moto has no DescribeInstanceRefreshes"),
    Patch(AutoScalingResponse, "cancel_instance_refresh",
          autoscaling_refresh.cancel_instance_refresh, "moto has no CancelInstanceRefresh"),
    Patch(AutoScalingResponse, "rollback_instance_refresh",
          autoscaling_refresh.rollback_instance_refresh, "moto has no RollbackInstanceRefresh"),
    # KMS
    Patch(KmsBackend, "any_id_to_key_id", kms.any_id_to_key_id,
          "moto answers an unknown alias with HTTP 500 in CreateGrant, ListGrants, "
          "RevokeGrant and others instead of NotFoundException"),
    # SSM
    Patch(SimpleSystemManagerResponse, "describe_parameters", ssm.describe_parameters_response,
          "moto answers DescribeParameters 10 a page whatever MaxResults asks (AWS: up to 50)"),
    # CodeDeploy
    Patch(CodeDeployBackend, "create_deployment", codedeploy_state.create_deployment,
          "moto accepts a deployment without a revision and any number of active "
          "deployments per group"),
    Patch(DeploymentInfo, "__init__", codedeploy_state.init_deployment,
          "moto's deployment ids are UUIDs; CodeDeploy's (d-XXXXXXXXX) end up in the names "
          "of replacement Auto Scaling groups"),
    Patch(CodeDeployResponse, "stop_deployment", codedeploy_state.stop_deployment_response,
          "moto has no StopDeployment"),
    Patch(CodeDeployResponse, "batch_get_deployment_groups",
          codedeploy_state.batch_get_deployment_groups_response,
          "moto has no BatchGetDeploymentGroups"),
    Patch(CodeDeployResponse, "list_deployment_targets",
          codedeploy_state.list_deployment_targets_response,
          "moto has no deployment targets"),
    Patch(CodeDeployResponse, "batch_get_deployment_targets",
          codedeploy_state.batch_get_deployment_targets_response,
          "moto has no deployment targets"),
    Patch(codedeploy_responses, "_deployment_info", codedeploy_state.deployment_info,
          "moto leaves out errorInformation, rollbackInfo and previousRevision"),
    Patch(codedeploy_responses, "_deployment_group_info", codedeploy_state.group_info,
          "moto leaves out targetRevision and the last deployments, and lists the Auto "
          "Scaling groups as bare names instead of objects"),
)


def apply() -> None:
    """Put every patch in place; idempotent."""
    for patch in PATCHES:
        install(patch)
