"""The CodeDeploy emulator: blue/green deployments that replace the ASG, fail on
demand with rollback, and stop; their instances' lifecycle events. A test that looks at
a deployment in a given state holds the group's deployments there, so nothing depends on
how fast the machine is."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from builder.aws import EnvAws, codedeploy, translate
from builder.errors import AwsError, InputError
from builder.local.stack import fail_next_deployment, hold_deployments
from builder.project import Project

pytestmark = pytest.mark.local

GROUP = "demo-dev-app"
GREEN_EVENTS = ["ApplicationStop", "DownloadBundle", "BeforeInstall", "Install", "AfterInstall",
                "ApplicationStart", "ValidateService", "BeforeAllowTraffic", "AllowTraffic",
                "AfterAllowTraffic"]
BLUE_EVENTS = ["BeforeBlockTraffic", "BlockTraffic", "AfterBlockTraffic"]


@pytest.fixture(scope="module")
def dev(local_stack: Project) -> EnvAws:
    return local_stack.env_aws(local_stack.resolve("demo", "dev", "app"))


Hold = Callable[[str | None], None]


@pytest.fixture
def hold(local_stack: Project) -> Iterator[Hold]:
    """Hold the group's deployments at a status (Created, InProgress; None lets them go
    on); let go after the test."""

    def at(status: str | None) -> None:
        hold_deployments(local_stack, "demo", "dev", "app", status)

    yield at
    at(None)


def group_info(dev: EnvAws) -> dict[str, Any]:
    info: dict[str, Any] = dev.client("codedeploy").get_deployment_group(
        applicationName="demo", deploymentGroupName=GROUP)["deploymentGroupInfo"]
    return info


def asg_names(dev: EnvAws) -> list[str]:
    groups = dev.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    return sorted(g["AutoScalingGroupName"] for g in groups if GROUP in g["AutoScalingGroupName"])


def deploy(dev: EnvAws, revision: dict[str, Any] | None = None) -> str:
    deployment_id: str = dev.client("codedeploy").create_deployment(
        applicationName="demo", deploymentGroupName=GROUP,
        revision=revision or group_info(dev)["targetRevision"])["deploymentId"]
    return deployment_id


def instance_ids(dev: EnvAws, asg: str) -> list[str]:
    [group] = dev.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[asg])["AutoScalingGroups"]
    return sorted(i["InstanceId"] for i in group["Instances"])


def targets(dev: EnvAws, deployment_id: str) -> dict[str, dict[str, Any]]:
    """The deployment's instance targets by id, as BatchGetDeploymentTargets tells them."""
    client = dev.client("codedeploy")
    ids = client.list_deployment_targets(deploymentId=deployment_id)["targetIds"]
    found = client.batch_get_deployment_targets(deploymentId=deployment_id, targetIds=ids)
    assert {t["deploymentTargetType"] for t in found["deploymentTargets"]} == {"InstanceTarget"}
    return {t["instanceTarget"]["targetId"]: t["instanceTarget"]
            for t in found["deploymentTargets"]}


def wait(dev: EnvAws, deployment_id: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info: dict[str, Any] = dev.client("codedeploy").get_deployment(
            deploymentId=deployment_id)["deploymentInfo"]
        if info["status"] in statuses:
            return info
        time.sleep(0.05)
    raise AssertionError(f"{deployment_id} never reached {statuses}")


def test_blue_green_deployment_replaces_the_asg(dev: EnvAws, hold: Hold) -> None:
    before = group_info(dev)
    original = before["autoScalingGroups"][0]["name"]
    ec2 = dev.client("ec2")
    template = ec2.describe_launch_templates(LaunchTemplateNames=[GROUP])["LaunchTemplates"][0]
    version = ec2.create_launch_template_version(
        LaunchTemplateId=template["LaunchTemplateId"], SourceVersion="$Default",
        LaunchTemplateData={"InstanceType": "t3.small"})["LaunchTemplateVersion"]
    ec2.modify_launch_template(LaunchTemplateId=template["LaunchTemplateId"],
                               DefaultVersion=str(version["VersionNumber"]))
    # The first deployment left the group's ASG on a version number (CodeDeploy pins the
    # copy); a release points it back at $Default before deploying.
    dev.client("autoscaling").update_auto_scaling_group(
        AutoScalingGroupName=original,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Default"})

    hold("Created")
    deployment_id = deploy(dev)
    # Not started yet: CodeDeploy has no targets to tell about.
    with pytest.raises(AwsError) as not_started, translate("listing targets"):
        dev.client("codedeploy").list_deployment_targets(deploymentId=deployment_id)
    assert not_started.value.code == "DeploymentNotStartedException"
    assert codedeploy.target_ids(dev.client("codedeploy"), deployment_id) == []
    hold("InProgress")
    wait(dev, deployment_id, "InProgress")
    replacement = f"CodeDeploy_{GROUP}_{deployment_id}"
    running = targets(dev, deployment_id)
    green = sorted(i for i, t in running.items() if t["instanceLabel"] == "Green")
    blue = sorted(i for i, t in running.items() if t["instanceLabel"] == "Blue")
    assert green == instance_ids(dev, replacement) and blue == instance_ids(dev, original)
    assert all(t["targetArn"].endswith(f":instance/{i}") for i, t in running.items())
    hold(None)
    info = wait(dev, deployment_id, "Succeeded", "Failed", "Stopped")
    assert info["status"] == "Succeeded" and "errorInformation" not in info
    ended = targets(dev, deployment_id)
    for target_id, target in ended.items():
        events = target["lifecycleEvents"]
        assert [e["lifecycleEventName"] for e in events] == (
            GREEN_EVENTS if target_id in green else BLUE_EVENTS)
        assert target["status"] == "Succeeded"
        assert {(e["status"], e["diagnostics"]["errorCode"]) for e in events} == {
            ("Succeeded", "Success")}
        assert all(e["startTime"] <= e["endTime"] for e in events)
    assert codedeploy.failed_event(dev.client("codedeploy"), deployment_id) is None
    assert deployment_id.startswith("d-") and len(deployment_id) == 11
    assert info["previousRevision"] == before["targetRevision"]

    assert asg_names(dev) == [replacement]
    after = group_info(dev)
    assert after["autoScalingGroups"] == [{"name": replacement}]
    assert after["lastSuccessfulDeployment"]["deploymentId"] == deployment_id
    assert after["targetRevision"] == info["revision"]
    asg = dev.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[replacement])["AutoScalingGroups"][0]
    # The version was resolved when the deployment started: a number, not $Default.
    assert asg["LaunchTemplate"]["Version"] == str(version["VersionNumber"])
    assert (asg["MinSize"], asg["MaxSize"], asg["DesiredCapacity"]) == (1, 2, 1)
    assert original not in asg_names(dev)


def test_failed_deployment_rolls_back_and_keeps_the_original(local_stack: Project,
                                                             dev: EnvAws, hold: Hold) -> None:
    original = group_info(dev)["autoScalingGroups"][0]["name"]
    armed = fail_next_deployment(local_stack, "demo", "dev", "app")
    assert (armed.account, armed.deployment_group) == ("111111111111", GROUP)

    hold("InProgress")
    deployment_id = deploy(dev)
    wait(dev, deployment_id, "InProgress")
    assert asg_names(dev) == sorted([original, f"CodeDeploy_{GROUP}_{deployment_id}"])
    hold(None)
    info = wait(dev, deployment_id, "Succeeded", "Failed", "Stopped")
    assert info["status"] == "Failed"
    assert info["errorInformation"]["code"] == "HEALTH_CONSTRAINTS"
    assert info["errorInformation"]["message"]
    assert "rollbackMessage" in info["rollbackInfo"]
    # One replacement instance failed its ValidateService hook; what would have come
    # after it (and the original instances' traffic events) was skipped.
    client = dev.client("codedeploy")
    [failed_id] = client.list_deployment_targets(
        deploymentId=deployment_id, targetFilters={"TargetStatus": ["Failed"]})["targetIds"]
    failed_target = targets(dev, deployment_id)[failed_id]
    assert failed_target["instanceLabel"] == "Green"
    statuses = {e["lifecycleEventName"]: e["status"] for e in failed_target["lifecycleEvents"]}
    assert statuses == {**dict.fromkeys(GREEN_EVENTS[:6], "Succeeded"),
                        "ValidateService": "Failed",
                        **dict.fromkeys(GREEN_EVENTS[7:], "Skipped")}
    blue = client.list_deployment_targets(
        deploymentId=deployment_id, targetFilters={"ServerInstanceLabel": ["Blue"]})["targetIds"]
    assert {e["status"] for i in blue for e in targets(dev, deployment_id)[i]["lifecycleEvents"]
            } == {"Skipped"}
    failed = codedeploy.failed_event(client, deployment_id)
    assert failed is not None
    assert (failed.target, failed.label, failed.event, failed.error_code) == (
        failed_id, "Green", "ValidateService", "ScriptFailed")
    assert failed.script and f"{failed.script} run as user root failed" in failed.message
    assert asg_names(dev) == [original]
    group = group_info(dev)
    assert group["autoScalingGroups"] == [{"name": original}]
    assert group["lastAttemptedDeployment"] == {**group["lastAttemptedDeployment"],
                                                "deploymentId": deployment_id,
                                                "status": "Failed"}
    assert group["lastSuccessfulDeployment"]["deploymentId"] != deployment_id
    failed = dev.client("codedeploy").list_deployments(
        applicationName="demo", deploymentGroupName=GROUP, includeOnlyStatuses=["Failed"])
    assert failed["deployments"] == [deployment_id]

    # Armed once: the next one succeeds again.
    assert wait(dev, deploy(dev), "Succeeded", "Failed")["status"] == "Succeeded"


def test_stopped_deployment_removes_the_replacement(dev: EnvAws, hold: Hold) -> None:
    client = dev.client("codedeploy")
    original = group_info(dev)["autoScalingGroups"][0]["name"]
    hold("InProgress")  # a stop still ends it
    deployment_id = deploy(dev)
    wait(dev, deployment_id, "InProgress")
    answer = client.stop_deployment(deploymentId=deployment_id)
    assert answer["status"] == "Pending"
    info = wait(dev, deployment_id, "Stopped", "Succeeded", "Failed")
    assert info["status"] == "Stopped"
    assert info["errorInformation"]["code"] == "MANUAL_STOP"
    # The original instances never lost their traffic: their events were skipped.
    stopped = targets(dev, deployment_id).values()
    assert {t["status"] for t in stopped if t["instanceLabel"] == "Blue"} == {"Skipped"}
    assert asg_names(dev) == [original]
    assert group_info(dev)["autoScalingGroups"] == [{"name": original}]
    with pytest.raises(AwsError) as done, translate("stopping"):
        client.stop_deployment(deploymentId=deployment_id)
    assert done.value.code == "DeploymentAlreadyCompletedException"


def test_a_missing_revision_fails_the_deployment(dev: EnvAws) -> None:
    original = group_info(dev)["autoScalingGroups"][0]["name"]
    revision = {"revisionType": "S3", "s3Location": {
        "bucket": "demo-dev-codedeploy-111111111111", "key": "app/none.zip",
        "bundleType": "zip"}}
    info = wait(dev, deploy(dev, revision), "Succeeded", "Failed", "Stopped")
    assert info["status"] == "Failed"
    assert info["errorInformation"]["code"] == "REVISION_MISSING"
    assert asg_names(dev) == [original]


def test_codedeploy_refuses_what_aws_refuses(dev: EnvAws, hold: Hold) -> None:
    client = dev.client("codedeploy")
    with pytest.raises(AwsError) as no_revision, translate("deploying"):
        client.create_deployment(applicationName="demo", deploymentGroupName=GROUP)
    assert no_revision.value.code == "RevisionRequiredException"
    hold("Created")
    deployment_id = deploy(dev)
    with pytest.raises(AwsError) as busy, translate("deploying"):
        deploy(dev)
    assert busy.value.code == "DeploymentLimitExceededException"
    hold(None)
    wait(dev, deployment_id, "Succeeded", "Failed", "Stopped")
    groups = client.batch_get_deployment_groups(
        applicationName="demo", deploymentGroupNames=[GROUP, "demo-dev-worker"])
    assert [g["deploymentGroupName"] for g in groups["deploymentGroupsInfo"]] == [
        GROUP, "demo-dev-worker"]
    target_id = client.list_deployment_targets(deploymentId=deployment_id)["targetIds"][0]
    refusals = {
        "DeploymentTargetDoesNotExistException": lambda: client.batch_get_deployment_targets(
            deploymentId=deployment_id, targetIds=["i-0123456789abcdef0"]),
        "DeploymentTargetIdRequiredException": lambda: client.batch_get_deployment_targets(
            deploymentId=deployment_id, targetIds=[]),
        "DeploymentTargetListSizeExceededException": lambda: client
        .batch_get_deployment_targets(deploymentId=deployment_id, targetIds=[target_id] * 26),
        "InvalidTargetFilterNameException": lambda: client.list_deployment_targets(
            deploymentId=deployment_id, targetFilters={"Color": ["Blue"]}),
        "DeploymentDoesNotExistException": lambda: client.list_deployment_targets(
            deploymentId="d-AAAAAAAAA"),
    }
    for code, call in refusals.items():
        with pytest.raises(AwsError) as refused, translate("reading targets"):
            call()
        assert refused.value.code == code


def test_deployments_are_held_only_before_they_end(hold: Hold) -> None:
    with pytest.raises(InputError, match="held at one of Created, InProgress, not 'Succeeded'"):
        hold("Succeeded")


# A DISCOVER_EXISTING group over two standing ASGs (staging: deploy_strategy
# blue_green_existing); the deployment names its replacement in targetInstances.
PAIR_GROUP = "demo-staging-app"
PAIR = ("demo-staging-app-a", "demo-staging-app-b")


@pytest.fixture(scope="module")
def staging(local_stack: Project) -> EnvAws:
    return local_stack.env_aws(local_stack.resolve("demo", "staging", "app"))


@pytest.fixture
def hold_pair(local_stack: Project) -> Iterator[Hold]:
    def at(status: str | None) -> None:
        hold_deployments(local_stack, "demo", "staging", "app", status)

    yield at
    at(None)


def deploy_onto(staging: EnvAws, asgs: list[str]) -> str:
    client = staging.client("codedeploy")
    revision = client.get_deployment_group(
        applicationName="demo", deploymentGroupName=PAIR_GROUP)["deploymentGroupInfo"][
        "targetRevision"]
    deployment_id: str = client.create_deployment(
        applicationName="demo", deploymentGroupName=PAIR_GROUP, revision=revision,
        targetInstances={"autoScalingGroups": asgs})["deploymentId"]
    return deployment_id


def pair_group(staging: EnvAws) -> list[str]:
    info = staging.client("codedeploy").get_deployment_group(
        applicationName="demo", deploymentGroupName=PAIR_GROUP)["deploymentGroupInfo"]
    return [asg["name"] for asg in info["autoScalingGroups"]]


def test_a_deployment_onto_an_existing_asg_moves_the_traffic_there(
        staging: EnvAws, hold_pair: Hold) -> None:
    serving, idle = PAIR
    assert pair_group(staging) == [serving]
    autoscaling = staging.client("autoscaling")
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=idle, MinSize=1,
                                          DesiredCapacity=1)
    old_instances = instance_ids(staging, serving)

    hold_pair("InProgress")
    deployment_id = deploy_onto(staging, [idle])
    wait(staging, deployment_id, "InProgress")
    running = targets(staging, deployment_id)
    assert sorted(i for i, t in running.items() if t["instanceLabel"] == "Green") == (
        instance_ids(staging, idle))
    assert sorted(i for i, t in running.items() if t["instanceLabel"] == "Blue") == (
        old_instances)
    hold_pair(None)
    info = wait(staging, deployment_id, "Succeeded", "Failed", "Stopped")

    assert info["status"] == "Succeeded"
    assert info["targetInstances"] == {"autoScalingGroups": [idle]}
    assert pair_group(staging) == [idle]  # the group serves the other of the pair now
    # CodeDeploy terminated the old instances; the ASG, still sized 1, launched another.
    states = staging.client("ec2").describe_instances(InstanceIds=old_instances)
    assert {i["State"]["Name"] for r in states["Reservations"] for i in r["Instances"]} == {
        "terminated"}
    relaunched = instance_ids(staging, serving)
    assert len(relaunched) == 1 and relaunched != old_instances
    names = {g["AutoScalingGroupName"] for g in autoscaling.describe_auto_scaling_groups()[
        "AutoScalingGroups"] if g["AutoScalingGroupName"].startswith(PAIR_GROUP)}
    assert names == set(PAIR)  # nothing copied, nothing deleted
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=serving, MinSize=0,
                                          DesiredCapacity=0)


def test_a_failed_deployment_onto_an_existing_asg_leaves_the_traffic(
        local_stack: Project, staging: EnvAws) -> None:
    serving = pair_group(staging)[0]
    [idle] = [name for name in PAIR if name != serving]
    staging.client("autoscaling").update_auto_scaling_group(
        AutoScalingGroupName=idle, MinSize=1, DesiredCapacity=1)
    fail_next_deployment(local_stack, "demo", "staging", "app")

    info = wait(staging, deploy_onto(staging, [idle]), "Succeeded", "Failed", "Stopped")

    assert info["status"] == "Failed"
    assert info["rollbackInfo"]["rollbackMessage"] == (
        f"Automatic rollback: the original instances keep serving ({serving}).")
    assert pair_group(staging) == [serving]
    assert len(instance_ids(staging, serving)) == 1  # untouched
    assert len(instance_ids(staging, idle)) == 1  # left for the caller to size down
    failed = codedeploy.failed_event(staging.client("codedeploy"), info["deploymentId"])
    assert failed is not None and failed.event == "ValidateService" and failed.label == "Green"
    staging.client("autoscaling").update_auto_scaling_group(
        AutoScalingGroupName=idle, MinSize=0, DesiredCapacity=0)


def test_a_deployment_onto_existing_asgs_needs_exactly_one(staging: EnvAws) -> None:
    info = wait(staging, deploy_onto(staging, list(PAIR)), "Succeeded", "Failed", "Stopped")
    assert info["status"] == "Failed"
    assert info["errorInformation"]["code"] == "AUTO_SCALING_CONFIGURATION"
