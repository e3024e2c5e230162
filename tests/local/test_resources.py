"""The pre-made resources, seen through builder.aws (assume-role into each env)."""

from __future__ import annotations

from typing import Any

import pytest

from builder.aws import EnvAws, translate
from builder.errors import AwsError
from builder.project import Project

pytestmark = pytest.mark.local

CANONICAL = "099720109477"
UBUNTU = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"


def env_aws(project: Project, env: str, comp: str = "app") -> EnvAws:
    return project.env_aws(project.resolve("demo", env, comp))


def group_info(aws: EnvAws, group: str) -> dict[str, Any]:
    info: dict[str, Any] = aws.client("codedeploy").get_deployment_group(
        applicationName="demo", deploymentGroupName=group)["deploymentGroupInfo"]
    return info


@pytest.mark.parametrize(("env", "account", "region", "green_fleet"), [
    ("dev", "111111111111", "eu-west-1", "COPY_AUTO_SCALING_GROUP"),
    ("staging", "222222222222", "eu-west-1", "DISCOVER_EXISTING"),  # blue_green_existing
    ("prod", "333333333333", "eu-central-1", "COPY_AUTO_SCALING_GROUP"),
])
def test_each_env_has_its_resources_in_its_account_and_region(
        local_stack: Project, env: str, account: str, region: str, green_fleet: str) -> None:
    aws = env_aws(local_stack, env)
    assert aws.client("sts").get_caller_identity()["Account"] == account
    ec2 = aws.client("ec2")
    assert ec2.meta.region_name == region
    base = ec2.describe_images(Owners=[CANONICAL],
                               Filters=[{"Name": "name", "Values": [UBUNTU]}])["Images"]
    assert len(base) == 1 and base[0]["OwnerId"] == CANONICAL and base[0]["Public"]
    assert base[0]["RootDeviceType"] == "ebs" and base[0]["CreationDate"]

    for comp in ("app", "worker"):
        name = f"demo-{env}-{comp}"
        template = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"][0]
        data = ec2.describe_launch_template_versions(
            LaunchTemplateId=template["LaunchTemplateId"], Versions=["$Default"],
        )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
        assert data["ImageId"] == base[0]["ImageId"]

        group = group_info(aws, name)
        assert group["autoRollbackConfiguration"] == {"enabled": True,
                                                      "events": ["DEPLOYMENT_FAILURE"]}
        assert group["lastSuccessfulDeployment"]["status"] == "Succeeded"
        if (env, comp) == ("prod", "app"):
            # deploy_strategy: instance_refresh: in place on the ASG Terraform made,
            # which keeps its name; two instances, so a refresh goes in two batches.
            assert group["deploymentStyle"] == {"deploymentType": "IN_PLACE",
                                                "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"}
            [asg_name] = [asg["name"] for asg in group["autoScalingGroups"]]
            assert asg_name == name
            asg = aws.client("autoscaling").describe_auto_scaling_groups(
                AutoScalingGroupNames=[asg_name])["AutoScalingGroups"][0]
            assert asg["DesiredCapacity"] == 2
            assert asg["LaunchTemplate"]["LaunchTemplateName"] == name
        else:
            assert group["deploymentStyle"] == {"deploymentType": "BLUE_GREEN",
                                                "deploymentOption": "WITH_TRAFFIC_CONTROL"}
            assert group["blueGreenDeploymentConfiguration"]["greenFleetProvisioningOption"] == {
                "action": green_fleet}
            # The first deployment succeeded: the group has a target revision and its ASG is
            # CodeDeploy's copy of the one Terraform made, or the first of the pair.
            deployment_id = group["lastSuccessfulDeployment"]["deploymentId"]
            [asg_name] = [asg["name"] for asg in group["autoScalingGroups"]]
            pair = (f"{name}-a", f"{name}-b")
            assert asg_name == (pair[0] if green_fleet == "DISCOVER_EXISTING"
                                else f"CodeDeploy_{name}_{deployment_id}")
            asgs = {asg["AutoScalingGroupName"]: asg for asg in aws.client("autoscaling")
                    .describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name, *pair])[
                        "AutoScalingGroups"]}
            assert asgs[asg_name]["DesiredCapacity"] == 1
            assert asgs[asg_name]["LaunchTemplate"]["LaunchTemplateName"] == name
            if green_fleet == "DISCOVER_EXISTING":  # the other of the pair idles at 0
                assert asgs[pair[1]]["DesiredCapacity"] == asgs[pair[1]]["MinSize"] == 0
                assert {(asg["AutoScalingGroupName"], tag["Value"]) for asg in asgs.values()
                        for tag in asg["Tags"] if tag["Key"] == "builder:slot"} == {
                    (pair[0], "a"), (pair[1], "b")}
            else:
                assert set(asgs) == {asg_name}  # the one Terraform made was replaced
        location = group["targetRevision"]["s3Location"]
        bundle = aws.client("s3").get_object(Bucket=location["bucket"], Key=location["key"])
        assert bundle["Body"].read().startswith(b"PK")  # a zip


def test_kms_aliases_exist_where_kms_key_id_names_them(local_stack: Project) -> None:
    for env, alias in (("staging", "alias/demo-staging-ami"), ("prod", "alias/demo-prod-ami")):
        key = env_aws(local_stack, env).client("kms").describe_key(KeyId=alias)["KeyMetadata"]
        assert key["Enabled"]


def test_resources_stay_in_their_account(local_stack: Project) -> None:
    staging = env_aws(local_stack, "staging")
    with pytest.raises(AwsError) as missing, translate("looking up"):
        staging.client("ec2").describe_launch_templates(LaunchTemplateNames=["demo-dev-app"])
    assert missing.value.code == "InvalidLaunchTemplateName.NotFoundException"
    prod_in_ireland = env_aws(local_stack, "prod").client("ec2", region="eu-west-1")
    with pytest.raises(AwsError), translate("looking up"):
        prod_in_ireland.describe_launch_templates(LaunchTemplateNames=["demo-prod-app"])
