"""`builder release` against the local stack: the launch template, the blue/green
deployment onto a new ASG, verification, rollback, refusals, the CLI and the calls made.

Deployments step every 0.2 s here; tests/release/test_release_waiting.py covers what
needs a deployment caught in progress (stop, timeout, concurrency, interrupts)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from builder.aws import images
from builder.aws import locks as lock_items
from builder.bake.build import BakeResult
from builder.batch import Failed
from builder.config.models import Combo
from builder.errors import BakeFailed, ConfigError, DeployFailed, InputError, RefusedError
from builder.local.mode import LOCAL
from builder.local.resources import revision_bundle
from builder.local.stack import fail_next_deployment
from builder.pipelines.bake_release import release_baked
from builder.project import Project
from builder.release.deploy import STATUS_POLLS
from builder.release.lock import held
from builder.release.refresh import STATUS_POLLS as REFRESH_POLLS
from builder.release.release import release
from tests.release.emulated import (
    Lines,
    clients,
    fleet_state,
    image_tags,
    make_ami,
    make_failed_copy,
)

pytestmark = pytest.mark.local

DEV_APP = Combo("demo", "dev", "app")
DEV_WORKER = Combo("demo", "dev", "worker")
STAGING_APP = Combo("demo", "staging", "app")
STAGING_WORKER = Combo("demo", "staging", "worker")
PROD_APP = Combo("demo", "prod", "app")
PROD_WORKER = Combo("demo", "prod", "worker")


def test_release_deploys_the_ami_on_a_new_asg_and_verifies_it(local_stack: Project) -> None:
    project = local_stack
    before = fleet_state(project, DEV_APP)
    ami = make_ami(project, DEV_APP)

    result = release(project, DEV_APP, ami_id=ami, progress=Lines())

    after = fleet_state(project, DEV_APP)
    assert (result.outcome, result.deployment_status) == ("verified", "Succeeded")
    assert result.version_created and not result.attached
    assert result.previous_version == before.default_version
    assert after.versions == before.versions + 1
    assert (after.default_version, after.default_image) == (result.new_version, ami)
    # The group's ASG is CodeDeploy's copy, launching the new version; the old one is gone.
    assert result.asg_before == before.asg != after.asg
    assert result.asg_after == after.asg == f"CodeDeploy_demo-dev-app_{result.deployment_id}"
    assert after.asg_version == str(result.new_version)
    assert after.last_successful == result.deployment_id
    tags = image_tags(project, DEV_APP, ami)
    assert tags[images.TAG_STATUS] == images.AmiStatus.VERIFIED
    assert tags["builder:verified-dev"].endswith("+00:00")
    # The new version: copied from the default, only ImageId given, the AMI named.
    ec2 = clients(project, DEV_APP)[0]
    [version] = ec2.describe_launch_template_versions(
        LaunchTemplateId=result.launch_template_id,
        Versions=[str(result.new_version)])["LaunchTemplateVersions"]
    assert version["VersionDescription"].startswith(f"builder: {ami} (")
    assert f"previous default {before.default_version}" in version["VersionDescription"]
    # The record, and the text that names the new ASG.
    assert result.record is not None
    assert result.record.parent == project.root / ".builder/releases/demo/dev/app"
    assert result.record.name.endswith(f"-{result.deployment_id}.json")
    assert result.record.stat().st_mode & 0o777 == 0o600
    assert {p.stat().st_mode & 0o777 for p in result.record.parents[:4]} == {0o700}
    record = json.loads(result.record.read_text())
    assert record == result.to_json()
    assert record["asg_after"] == after.asg and record["timings"]["total"] > 0
    assert f"-> {after.asg} (new name)" in result.to_text()


def test_a_release_changes_only_the_ami_of_the_default_version(local_stack: Project) -> None:
    """The launch template as Terraform users keep it (instance type, security groups,
    user data, tags...): the released version and the instances of the new ASG keep all
    of it and change only the AMI."""
    project = local_stack
    settings = project.resolve("demo", "staging", "worker").settings
    ec2, autoscaling, _ = clients(project, STAGING_WORKER)
    before = fleet_state(project, STAGING_WORKER)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    group = ec2.create_security_group(GroupName="worker", Description="worker",
                                      VpcId=vpc["VpcId"])["GroupId"]
    terraform = ec2.create_launch_template_version(
        LaunchTemplateName=settings.launch_template_name, VersionDescription="terraform",
        LaunchTemplateData={
            "ImageId": before.default_image, "InstanceType": "t3.small",
            "SecurityGroupIds": [group], "Monitoring": {"Enabled": True},
            "UserData": base64.b64encode(b"#!/bin/sh\necho worker\n").decode(),
            "MetadataOptions": {"HttpTokens": "required"},
            "TagSpecifications": [{"ResourceType": "instance",
                                   "Tags": [{"Key": "Role", "Value": "worker"}]}]},
    )["LaunchTemplateVersion"]
    ec2.modify_launch_template(LaunchTemplateName=settings.launch_template_name,
                               DefaultVersion=str(terraform["VersionNumber"]))
    ami = make_ami(project, STAGING_WORKER)

    result = release(project, STAGING_WORKER, ami_id=ami, progress=Lines())

    assert result.outcome == "verified"
    assert result.previous_version == terraform["VersionNumber"]
    [released] = ec2.describe_launch_template_versions(
        LaunchTemplateName=settings.launch_template_name,
        Versions=[str(result.new_version)])["LaunchTemplateVersions"]
    assert released["DefaultVersion"]
    assert released["LaunchTemplateData"] == {**terraform["LaunchTemplateData"], "ImageId": ami}
    [asg] = autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[result.asg_after])["AutoScalingGroups"]
    instances = ec2.describe_instances(InstanceIds=[i["InstanceId"] for i in asg["Instances"]])
    launched = [i for r in instances["Reservations"] for i in r["Instances"]]
    assert launched and {(i["ImageId"], i["InstanceType"]) for i in launched} == {
        (ami, "t3.small")}


def test_releasing_the_same_ami_again_changes_nothing(local_stack: Project) -> None:
    project = local_stack
    ami = make_ami(project, PROD_APP)
    first = release(project, PROD_APP, ami_id=ami, progress=Lines())
    state = fleet_state(project, PROD_APP)

    again = release(project, PROD_APP, ami_id=ami, progress=Lines())

    assert again.outcome == "unchanged"
    assert not again.version_created and again.deployment_id is None
    assert (again.new_version, again.previous_version) == (first.new_version,
                                                           first.previous_version)
    assert again.asg_after == first.asg_after
    assert fleet_state(project, PROD_APP) == state
    assert "nothing to do" in again.to_text()


def test_no_deploy_moves_only_the_launch_template_and_a_release_finishes_it(
        local_stack: Project) -> None:
    """The state an interrupt right after the launch-template step leaves (default on the
    AMI, no deployment): a later release deploys it without another version."""
    project = local_stack
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    verified = make_ami(project, DEV_WORKER, status=images.AmiStatus.VERIFIED,
                        created=an_hour_ago)
    newest = make_ami(project, DEV_WORKER, created=an_hour_ago + timedelta(minutes=1))
    make_ami(project, DEV_WORKER, status=images.AmiStatus.FAILED)  # never chosen by default
    before = fleet_state(project, DEV_WORKER)

    only_template = release(project, DEV_WORKER, deploy=False, progress=Lines())

    assert only_template.ami_id == newest != verified
    assert (only_template.outcome, only_template.deployment_id) == ("released", None)
    middle = fleet_state(project, DEV_WORKER)
    assert (middle.default_version, middle.default_image) == (only_template.new_version, newest)
    assert (middle.asg, middle.asg_version) == (before.asg, before.asg_version)
    assert image_tags(project, DEV_WORKER, newest)[images.TAG_STATUS] == images.AmiStatus.RELEASED

    finished = release(project, DEV_WORKER, progress=Lines())

    assert finished.ami_id == newest and finished.outcome == "verified"
    assert not finished.version_created
    assert finished.previous_version == before.default_version  # from the version's description
    after = fleet_state(project, DEV_WORKER)
    assert after.versions == middle.versions and after.default_version == middle.default_version
    assert after.asg == finished.asg_after != before.asg
    assert after.asg_version == str(finished.new_version)


def test_a_failed_deployment_rolls_the_template_and_asg_back(local_stack: Project) -> None:
    project = local_stack
    ami = make_ami(project, DEV_APP)
    before = fleet_state(project, DEV_APP)
    fail_next_deployment(project, "demo", "dev", "app")

    with pytest.raises(DeployFailed) as failed:
        release(project, DEV_APP, ami_id=ami, progress=Lines())

    message = failed.value.message
    assert failed.value.exit_code == 1
    assert "Failed: HEALTH_CONSTRAINTS:" in message and "rollback:" in message
    # The lifecycle event that failed, on which instance, and why.
    assert re.search(r"lifecycle event ValidateService failed on i-\w+ \(Green\): "
                     r"ScriptFailed: Script at specified location: \S+ run as user root "
                     r"failed with exit code 1", message), message
    assert f"default back to version {before.default_version}" in message
    assert f"{ami} tagged failed" in message
    after = fleet_state(project, DEV_APP)
    assert (after.default_version, after.default_image) == (before.default_version,
                                                            before.default_image)
    assert (after.asg, after.asg_version) == (before.asg, before.asg_version)
    assert after.versions == before.versions + 1  # kept, no longer the default
    assert image_tags(project, DEV_APP, ami)[images.TAG_STATUS] == images.AmiStatus.FAILED
    records = sorted((project.root / ".builder/releases/demo/dev/app").glob("*.json"))
    failure = json.loads(records[-1].read_text())
    assert (failure["outcome"], failure["deployment_status"]) == ("failed", "Failed")
    assert failure["ami_id"] == ami and "HEALTH_CONSTRAINTS" in failure["error"]
    event = failure["failed_lifecycle_event"]
    assert (event["event"], event["label"], event["error_code"]) == (
        "ValidateService", "Green", "ScriptFailed")
    assert event["target"].startswith("i-") and event["script"] in event["message"]
    assert "lifecycle event ValidateService failed" in failure["error"]
    assert str(records[-1]) in message


def test_a_given_revision_is_deployed_and_a_missing_one_rolls_back(local_stack: Project
                                                                    ) -> None:
    project = local_stack
    settings = project.resolve("demo", "staging", "app").settings
    bucket = f"demo-staging-codedeploy-{settings.aws_account_id}"
    env_aws = project.env_aws(project.resolve("demo", "staging", "app"))
    env_aws.client("s3").put_object(Bucket=bucket, Key="app/v2.zip", Body=revision_bundle())
    codedeploy = env_aws.client("codedeploy")

    done = release(project, STAGING_APP, ami_id=make_ami(project, STAGING_APP),
                   revision=f"s3://{bucket}/app/v2.zip", progress=Lines())

    assert done.outcome == "verified" and done.revision == f"s3://{bucket}/app/v2.zip"
    group = codedeploy.get_deployment_group(applicationName="demo",
                                            deploymentGroupName="demo-staging-app")
    assert group["deploymentGroupInfo"]["targetRevision"]["s3Location"]["key"] == "app/v2.zip"

    before = fleet_state(project, STAGING_APP)
    with pytest.raises(DeployFailed, match="REVISION_MISSING"):
        release(project, STAGING_APP, ami_id=make_ami(project, STAGING_APP),
                revision=f"s3://{bucket}/app/none.zip", progress=Lines())
    after = fleet_state(project, STAGING_APP)
    assert (after.default_version, after.asg, after.asg_version) == (
        before.default_version, before.asg, before.asg_version)


def test_the_wrong_ami_is_refused_before_anything_changes(local_stack: Project) -> None:
    project = local_stack
    before = fleet_state(project, DEV_APP)
    other_env = make_ami(project, DEV_APP, tags={images.TAG_ENV: "staging"})
    other_comp = make_ami(project, DEV_APP, tags={images.TAG_COMP: "worker"})
    untagged = make_ami(project, DEV_APP)
    clients(project, DEV_APP)[0].delete_tags(Resources=[untagged], Tags=[
        {"Key": images.TAG_APP}, {"Key": images.TAG_ENV}, {"Key": images.TAG_COMP}])
    failed_copy = make_failed_copy(project, DEV_APP, source_env="staging")

    refusals = {
        other_env: "is tagged for demo/staging/app, not demo/dev/app",
        other_comp: "is tagged for demo/dev/worker, not demo/dev/app",
        untagged: "has no builder:app/env/comp tags",
        failed_copy: "is failed, not available",
        "ami-0123456789abcdef0": "no such AMI in 111111111111 eu-west-1",
    }
    for ami, reason in refusals.items():
        with pytest.raises(RefusedError) as refused:
            release(project, DEV_APP, ami_id=ami, progress=Lines())
        assert reason in refused.value.message
        assert refused.value.exit_code == 2
    assert fleet_state(project, DEV_APP) == before


def test_the_cli_exit_codes(local_stack: Project, cli: Callable[..., Any]) -> None:
    project, root = local_stack, local_stack.root
    ami = make_ami(project, PROD_WORKER)

    done = cli("--local", "release", "demo", "prod", "worker", "--ami", ami, "--json", root=root)
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    assert document["outcome"] == "verified" and document["ami_id"] == ami
    assert document["asg_after"].startswith("CodeDeploy_demo-prod-worker_d-")

    wrong = make_ami(project, PROD_WORKER, tags={images.TAG_APP: "other"})
    refused = cli("--local", "release", "demo", "prod", "worker", "--ami", wrong, root=root)
    assert refused.exit_code == 2
    assert "is tagged for other/prod/worker" in refused.stderr

    env_aws = project.env_aws(project.resolve("demo", "prod", "worker"))
    newer = make_ami(project, PROD_WORKER)
    with held(env_aws, PROD_WORKER, minutes=5):
        locked = cli("--local", "release", "demo", "prod", "worker", "--ami", newer, root=root)
        assert locked.exit_code == 1
        assert "demo/prod/worker: locked by " in locked.stderr and " since " in locked.stderr
        broken = cli("--local", "release", "demo", "prod", "worker", "--ami", newer,
                     "--break-lock", root=root)
        assert broken.exit_code == 0, broken.output
        assert "broke the lock of" in broken.stderr

    fail_next_deployment(project, "demo", "prod", "worker")
    failed = cli("--local", "release", "demo", "prod", "worker", "--ami",
                 make_ami(project, PROD_WORKER), root=root)
    assert failed.exit_code == 1
    assert "HEALTH_CONSTRAINTS" in failed.stderr

    bad_revision = cli("--local", "release", "demo", "prod", "worker", "--revision", "bucket/key",
                       root=root)
    assert bad_revision.exit_code == 2 and "expected s3://BUCKET/KEY" in bad_revision.stderr


def test_one_release_makes_few_aws_calls(local_stack: Project) -> None:
    project = local_stack
    env_aws = project.env_aws(project.resolve("demo", "prod", "worker"))
    lock_items.create_table(env_aws.client("dynamodb"))  # made on first use; not counted here
    ami = make_ami(project, PROD_WORKER)
    fresh = Project.open(str(project.root), local_mode=LOCAL)  # own session: assume-role counted

    result = release(fresh, PROD_WORKER, ami_id=ami, progress=Lines())

    assert result.outcome == "verified"
    counts = fresh.aws.call_log.counts
    print(dict(counts))
    assert counts["codedeploy.GetDeployment"] >= 1
    # Lifecycle events cost at most one more call per status poll.
    assert counts["codedeploy.ListDeploymentTargets"] + counts[
        "codedeploy.BatchGetDeploymentTargets"] <= counts["codedeploy.GetDeployment"]
    # 15 (turning on the AMI's deregistration protection among them), and the two reads
    # that check input before anything is written: the caller identity (once per
    # account) and the launch template before the lock; and two for the records: the AMI
    # that ran (changes vs what runs) and the release record's upload to records_bucket.
    assert counts["s3.PutObject"] == 1
    assert fresh.aws.call_log.total(excluding=STATUS_POLLS) <= 20
    # Every non-poll call is made once (the launch template is read before the lock is
    # taken, to refuse a missing one without writing anything, and again under it; the
    # AMI that runs is read besides the one released).
    assert {name: n for name, n in counts.items() if n > 1 and name not in STATUS_POLLS} == {
        "codedeploy.GetDeploymentGroup": 2, "autoscaling.DescribeAutoScalingGroups": 2,
        "ec2.DescribeLaunchTemplateVersions": 2, "ec2.DescribeImages": 2}


def test_one_refresh_release_makes_few_aws_calls(local_stack: Project) -> None:
    """deploy_strategy: instance_refresh (demo prod app)."""
    project = local_stack
    env_aws = project.env_aws(project.resolve("demo", "prod", "app"))
    lock_items.create_table(env_aws.client("dynamodb"))  # made on first use; not counted here
    ami = make_ami(project, PROD_APP)
    fresh = Project.open(str(project.root), local_mode=LOCAL)  # own session: assume-role counted

    result = release(fresh, PROD_APP, ami_id=ami, progress=Lines())

    assert (result.outcome, result.strategy) == ("verified", "instance_refresh")
    counts = fresh.aws.call_log.counts
    print(dict(counts))
    assert counts["autoscaling.DescribeInstanceRefreshes"] >= 1
    # 15 (the pin of an ASG on $Default among them, and the two reads that check input
    # before anything is written).
    assert fresh.aws.call_log.total(excluding=REFRESH_POLLS) <= 20
    # Every non-poll call is made once but the ASG and launch template reads (checked
    # before the lock and under it; the ASG read back after the refresh).
    assert {name: n for name, n in counts.items() if n > 1 and name not in REFRESH_POLLS} == {
        "autoscaling.DescribeAutoScalingGroups": 2, "ec2.DescribeLaunchTemplateVersions": 2,
        "ec2.DescribeImages": 2}


def test_a_release_onto_a_pair_makes_few_aws_calls(local_stack: Project) -> None:
    """blue_green_existing (staging): the pair is read in one call; the idle group is
    sized and pointed in one, and the old one sized to 0 in one."""
    project = local_stack
    env_aws = project.env_aws(project.resolve("demo", "staging", "app"))
    lock_items.create_table(env_aws.client("dynamodb"))  # made on first use; not counted here
    ami = make_ami(project, STAGING_APP)
    fresh = Project.open(str(project.root), local_mode=LOCAL)

    result = release(fresh, STAGING_APP, ami_id=ami, progress=Lines())

    assert (result.outcome, result.strategy) == ("verified", "blue_green_existing")
    counts = fresh.aws.call_log.counts
    print(dict(counts))
    # One more than a copy's release (the old group sized to 0), with the same two
    # reads before anything is written, the AMI's protection and the two records calls.
    assert fresh.aws.call_log.total(excluding=STATUS_POLLS) <= 20
    assert counts["autoscaling.UpdateAutoScalingGroup"] == 2  # the idle one up, the old down
    assert {name: n for name, n in counts.items() if n > 1 and name not in STATUS_POLLS} == {
        "codedeploy.GetDeploymentGroup": 2, "autoscaling.DescribeAutoScalingGroups": 2,
        "ec2.DescribeLaunchTemplateVersions": 2, "autoscaling.UpdateAutoScalingGroup": 2,
        "ec2.DescribeImages": 2}


def test_bake_release_reports_each_comp(local_stack: Project) -> None:
    project = local_stack
    ami = make_ami(project, DEV_APP)
    baked = BakeResult(DEV_APP, ami, "eu-west-1", "111111111111", True, "f" * 64, "ami-base",
                       0.1, None)
    broken = Failed(DEV_WORKER, BakeFailed("packer build failed: boom"))

    report = release_baked(project, [baked, broken], progress=Lines())

    [(first, released), (second, nothing)] = report.outcomes
    assert first is baked and second is broken and nothing is None
    assert released is not None and released.to_json()["outcome"] == "verified"
    assert report.exit_code == 1
    text = report.to_text()
    assert "demo/dev/worker" in text and "packer build failed: boom" in text
    assert released.to_json()["asg_after"] in text


def test_a_failed_release_of_the_default_terraform_set_deploys_again(local_stack: Project
                                                                     ) -> None:
    """Terraform's own version launches the AMI: a failed release has no builder version
    to take the default back to, so the default keeps the AMI. The next release deploys
    it again; the failure it saw and rolled back is not followed a second time."""
    project = local_stack
    name = project.resolve("demo", "dev", "worker").settings.launch_template_name
    ec2 = clients(project, DEV_WORKER)[0]
    ami = make_ami(project, DEV_WORKER)
    terraform = ec2.create_launch_template_version(
        LaunchTemplateName=name, SourceVersion="$Default", VersionDescription="terraform",
        LaunchTemplateData={"ImageId": ami})["LaunchTemplateVersion"]["VersionNumber"]
    ec2.modify_launch_template(LaunchTemplateName=name, DefaultVersion=str(terraform))
    fail_next_deployment(project, "demo", "dev", "worker")

    with pytest.raises(DeployFailed) as failed:
        release(project, DEV_WORKER, ami_id=ami, progress=Lines())

    assert f"launch template default stays at version {terraform}" in failed.value.message
    first = fleet_state(project, DEV_WORKER)
    assert (first.default_version, first.default_image) == (terraform, ami)
    assert image_tags(project, DEV_WORKER, ami)[images.TAG_STATUS] == images.AmiStatus.FAILED

    again = release(project, DEV_WORKER, ami_id=ami, progress=Lines())

    assert (again.outcome, again.attached, again.version_created) == ("verified", False, False)
    assert again.deployment_id != first.last_attempted
    assert image_tags(project, DEV_WORKER, ami)[images.TAG_STATUS] == images.AmiStatus.VERIFIED


def test_a_strategy_the_deployment_group_disagrees_with_is_refused_before_any_change(
        local_stack: Project) -> None:
    """An in-place group under the default strategy (blue_green_copy): exit 2 naming the
    strategy that fits, and nothing written."""
    project, combo = local_stack, Combo("demo", "dev", "worker")
    settings = project.resolve(*astuple(combo)).settings
    codedeploy = clients(project, combo)[2]
    asg = fleet_state(project, combo).asg
    codedeploy.create_deployment_group(
        applicationName=settings.codedeploy_application, deploymentGroupName="worker-in-place",
        serviceRoleArn=f"arn:aws:iam::{settings.aws_account_id}:role/codedeploy",
        autoScalingGroups=[asg],
        deploymentStyle={"deploymentType": "IN_PLACE",
                         "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"})
    ami = make_ami(project, combo)
    before = fleet_state(project, combo)
    layer = project.root / "vars/demo/dev/worker.yml"
    layer.write_text("codedeploy_deployment_group: worker-in-place\n")
    try:
        fresh = Project.open(str(project.root), local_mode=LOCAL)
        with pytest.raises(ConfigError) as refused:
            release(fresh, combo, ami_id=ami, progress=Lines())
    finally:
        layer.unlink()
    assert refused.value.exit_code == 2
    assert "deploy_strategy: blue_green_copy needs a blue/green group that copies" in str(
        refused.value)
    assert "is an in-place group: set deploy_strategy: instance_refresh" in str(refused.value)
    assert fleet_state(project, combo) == before
    assert image_tags(project, combo, ami)[images.TAG_STATUS] == images.AmiStatus.BAKED


def test_deploy_strategy_none_releases_to_the_launch_template_only(
        local_stack: Project) -> None:
    project, combo = local_stack, Combo("demo", "dev", "worker")
    ami = make_ami(project, combo)
    before = fleet_state(project, combo)
    layer = project.root / "vars/demo/dev/worker.yml"
    layer.write_text("deploy_strategy: none\n")
    try:
        fresh = Project.open(str(project.root), local_mode=LOCAL)
        result = release(fresh, combo, ami_id=ami, progress=Lines())
        with pytest.raises(InputError, match="--revision needs a rollout"):
            release(fresh, combo, ami_id=ami, revision="s3://bucket/key.zip")
    finally:
        layer.unlink()
    after = fleet_state(project, combo)
    assert (result.outcome, result.strategy, result.deployment_id) == ("released", "none", None)
    assert (after.default_image, after.versions) == (ami, before.versions + 1)
    assert after.asg == before.asg and after.last_successful == before.last_successful
    assert image_tags(project, combo, ami)[images.TAG_STATUS] == images.AmiStatus.RELEASED
    assert result.record is not None
    assert json.loads(result.record.read_text())["strategy"] == "none"
