"""`deploy_strategy: blue_green_existing` against the local stack: a DISCOVER_EXISTING
deployment group over two standing Auto Scaling groups (staging in the demo; the app's
pair found by its builder:slot tags, the worker's named by asg_pair). Releases alternate
between the two, which keep their names; a failure leaves the traffic where it was;
configurations that don't fit are refused before anything changes."""

from __future__ import annotations

from dataclasses import astuple, dataclass

import pytest

from builder.aws import images
from builder.config.models import Combo
from builder.errors import DeployFailed, InputError, OperationFailed
from builder.local.mode import LOCAL
from builder.local.stack import fail_next_deployment, hold_deployments
from builder.project import Project
from builder.release.release import release
from tests.release.emulated import Lines, clients, fleet_state, image_tags, make_ami
from tests.release.test_release_waiting import wait_for_status

pytestmark = pytest.mark.local

STAGING_APP = Combo("demo", "staging", "app")
STAGING_WORKER = Combo("demo", "staging", "worker")
APP_PAIR = ("demo-staging-app-a", "demo-staging-app-b")
WORKER_PAIR = ("demo-staging-worker-a", "demo-staging-worker-b")


@dataclass(frozen=True)
class Member:
    """One Auto Scaling group of a pair as it is now."""

    version: str
    sizes: tuple[int, int, int]  # min, desired, max
    instances: int


def pair_state(project: Project, combo: Combo, names: tuple[str, str]) -> dict[str, Member]:
    autoscaling = clients(project, combo)[1]
    found = autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=list(names))["AutoScalingGroups"]
    return {g["AutoScalingGroupName"]: Member(
        g["LaunchTemplate"]["Version"], (g["MinSize"], g["DesiredCapacity"], g["MaxSize"]),
        len(g["Instances"])) for g in found}


def instance_images(project: Project, combo: Combo, name: str) -> set[str]:
    ec2, autoscaling, _ = clients(project, combo)
    [group] = autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[name])["AutoScalingGroups"]
    ids = [i["InstanceId"] for i in group["Instances"]]
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"] if ids else []
    return {i["ImageId"] for r in reservations for i in r["Instances"]}


def all_asg_names(project: Project, combo: Combo) -> set[str]:
    autoscaling = clients(project, combo)[1]
    return {g["AutoScalingGroupName"]
            for g in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]}


def test_two_releases_alternate_between_the_pair_and_keep_the_names(local_stack: Project
                                                                     ) -> None:
    project, combo = local_stack, STAGING_APP
    assert project.resolve(*astuple(combo)).settings.asg_pair is None  # found by tags
    names_before = all_asg_names(project, combo)
    a, b = APP_PAIR
    assert pair_state(project, combo, APP_PAIR) == {
        a: Member("$Default", (1, 1, 2), 1), b: Member("$Default", (0, 0, 2), 0)}

    first_ami = make_ami(project, combo)
    first = release(project, combo, ami_id=first_ami, progress=Lines())

    assert (first.outcome, first.strategy) == ("verified", "blue_green_existing")
    assert (first.asg_before, first.asg_after) == (a, b)
    assert fleet_state(project, combo).asg == b  # the deployment group serves b now
    assert pair_state(project, combo, APP_PAIR) == {
        b: Member(str(first.new_version), (1, 1, 2), 1),
        a: Member("$Default", (0, 0, 2), 0)}  # sized to 0: no relaunch
    assert instance_images(project, combo, b) == {first_ami}
    assert image_tags(project, combo, first_ami)[images.TAG_STATUS] == "verified"

    second_ami = make_ami(project, combo)
    second = release(project, combo, ami_id=second_ami, progress=Lines())

    assert (second.outcome, second.asg_before, second.asg_after) == ("verified", b, a)
    assert pair_state(project, combo, APP_PAIR) == {
        a: Member(str(second.new_version), (1, 1, 2), 1),
        b: Member(str(first.new_version), (0, 0, 2), 0)}
    assert instance_images(project, combo, a) == {second_ami}
    assert all_asg_names(project, combo) == names_before  # no group made or removed
    assert f"{b} -> {a} (the other of the pair, serving now)" in second.to_text()

    again = release(project, combo, ami_id=second_ami, progress=Lines())
    assert again.outcome == "unchanged" and again.deployment_id is None


def test_a_pair_is_named_by_asg_pair(local_stack: Project) -> None:
    project, combo = local_stack, STAGING_WORKER
    assert project.resolve(*astuple(combo)).settings.asg_pair == WORKER_PAIR
    ami = make_ami(project, combo)

    result = release(project, combo, ami_id=ami, progress=Lines())

    assert (result.outcome, result.asg_before, result.asg_after) == ("verified", *WORKER_PAIR)
    state = pair_state(project, combo, WORKER_PAIR)
    assert state[WORKER_PAIR[1]].sizes == (1, 1, 2)
    assert state[WORKER_PAIR[0]] == Member("$Default", (0, 0, 2), 0)


def test_a_deployment_that_ended_unseen_is_finished_by_a_release_again(
        local_stack: Project) -> None:
    """--no-wait: CodeDeploy terminates the old instances while nobody watches, and the
    old group, still sized, launches others; the next release of the AMI follows the
    deployment, verifies, and sizes the old group to 0."""
    project, combo = local_stack, STAGING_WORKER
    ami = make_ami(project, combo)
    started = release(project, combo, ami_id=ami, wait=False, progress=Lines())
    assert started.outcome == "deploying" and started.deployment_id
    wait_for_status(project, combo, started.deployment_id, "Succeeded")
    old = started.asg_before
    assert old is not None
    relaunched = pair_state(project, combo, WORKER_PAIR)[old]
    assert relaunched.sizes[1] == relaunched.instances == 1

    again = release(project, combo, ami_id=ami, progress=Lines())

    assert again.attached and again.deployment_id == started.deployment_id
    assert again.outcome == "verified" and again.asg_after != old
    assert pair_state(project, combo, WORKER_PAIR)[old].sizes[:2] == (0, 0)
    assert pair_state(project, combo, WORKER_PAIR)[old].instances == 0


def test_a_failed_deployment_leaves_the_traffic_and_sizes_the_idle_group_back(
        local_stack: Project) -> None:
    project, combo = local_stack, STAGING_APP
    before_fleet = fleet_state(project, combo)
    before_pair = pair_state(project, combo, APP_PAIR)
    serving = before_fleet.asg
    ami = make_ami(project, combo)
    fail_next_deployment(project, combo.app, combo.env, combo.comp)

    with pytest.raises(DeployFailed) as failed:
        release(project, combo, ami_id=ami, progress=Lines())

    assert failed.value.exit_code == 1
    assert "lifecycle event ValidateService failed" in failed.value.message
    idle = next(name for name in APP_PAIR if name != serving)
    assert f"Auto Scaling group {idle} back to size 0" in failed.value.message
    after = fleet_state(project, combo)
    assert after.asg == serving  # the traffic never moved
    assert (after.default_version, after.default_image) == (before_fleet.default_version,
                                                            before_fleet.default_image)
    assert pair_state(project, combo, APP_PAIR) == before_pair
    assert image_tags(project, combo, ami)[images.TAG_STATUS] == images.AmiStatus.FAILED


def test_a_busy_group_leaves_the_pair_as_it_was(local_stack: Project) -> None:
    """CodeDeploy refuses the deployment (another one is running): the idle group goes
    back to its size and version, and the launch template's default too."""
    project, combo = local_stack, STAGING_APP
    before_fleet, before_pair = fleet_state(project, combo), pair_state(project, combo, APP_PAIR)
    codedeploy = clients(project, combo)[2]
    hold_deployments(project, combo.app, combo.env, combo.comp, "Created")
    try:
        other = codedeploy.create_deployment(
            applicationName="demo", deploymentGroupName="demo-staging-app",
            revision=codedeploy.get_deployment_group(
                applicationName="demo", deploymentGroupName="demo-staging-app")[
                "deploymentGroupInfo"]["targetRevision"],
            targetInstances={"autoScalingGroups": [before_fleet.asg]})["deploymentId"]
        with pytest.raises(OperationFailed) as busy:
            release(project, combo, ami_id=make_ami(project, combo), progress=Lines())
        assert "demo-staging-app is busy: " in busy.value.message
        assert f"already has an active Deployment '{other}'" in busy.value.message
        after = fleet_state(project, combo)
        assert (after.asg, after.default_version) == (before_fleet.asg,
                                                      before_fleet.default_version)
        assert pair_state(project, combo, APP_PAIR) == before_pair
    finally:
        hold_deployments(project, combo.app, combo.env, combo.comp, None)
    wait_for_status(project, combo, other, "Succeeded")


def _refused(project: Project, combo: Combo, layer: str, text: str) -> InputError:
    """A release with `text` as the comp's own layer: refused (exit 2) before any change."""
    ami = make_ami(project, combo)
    before = fleet_state(project, combo)
    path = project.root / f"vars/{combo.app}/{combo.env}/{layer}"
    kept = path.read_text() if path.exists() else None
    path.write_text(text)
    try:
        fresh = Project.open(str(project.root), local_mode=LOCAL)
        with pytest.raises(InputError) as refused:
            release(fresh, combo, ami_id=ami, progress=Lines())
    finally:
        if kept is None:
            path.unlink()
        else:
            path.write_text(kept)
    assert refused.value.exit_code == 2
    after = fleet_state(project, combo)
    assert (after.default_version, after.versions, after.asg) == (
        before.default_version, before.versions, before.asg)
    assert image_tags(project, combo, ami)[images.TAG_STATUS] == images.AmiStatus.BAKED
    return refused.value


@pytest.mark.parametrize(("text", "says"), [
    ("asg_pair: [demo-staging-worker-a, demo-staging-worker-c]\n",
     "asg_pair: no Auto Scaling group demo-staging-worker-c in 222222222222 eu-west-1"),
    ("asg_pair: [demo-staging-worker-a, demo-staging-app-b]\n",
     "asg_pair: Auto Scaling group demo-staging-app-b launches from lt-"),
    ("asg_pair: [demo-staging-worker-a]\n",
     "asg_pair: must be a list of two Auto Scaling group names"),
    ("asg_pair: [demo-staging-worker-a, demo-staging-worker-a]\n",
     "asg_pair: names 'demo-staging-worker-a' twice"),
    ("codedeploy_deployment_group: demo-staging-app\n",
     "asg_pair: can't tell which of demo-staging-worker-a and demo-staging-worker-b serves"),
])
def test_a_pair_that_does_not_fit_is_refused_naming_asg_pair(
        local_stack: Project, text: str, says: str) -> None:
    layer = local_stack.root / "vars/demo/staging/worker.yml"
    if "asg_pair" not in text:
        text = layer.read_text() + text  # the pair stays; only the deployment group changes
    refused = _refused(local_stack, STAGING_WORKER, "worker.yml", text)
    assert says in str(refused)
    assert "vars/demo/staging/worker.yml:" in refused.format(local_stack.root)


def test_tags_that_find_no_pair_are_refused(local_stack: Project) -> None:
    autoscaling = clients(local_stack, STAGING_APP)[1]
    autoscaling.delete_tags(Tags=[{
        "ResourceId": APP_PAIR[1], "ResourceType": "auto-scaling-group",
        "Key": images.TAG_SLOT}])
    try:
        refused = _refused(local_stack, STAGING_APP, "app.yml", "")
    finally:
        autoscaling.create_or_update_tags(Tags=[{
            "ResourceId": APP_PAIR[1], "ResourceType": "auto-scaling-group",
            "Key": images.TAG_SLOT, "Value": "b", "PropagateAtLaunch": False}])
    assert "asg_pair: unset, and 1 Auto Scaling groups in 222222222222 eu-west-1 are " \
           "tagged builder:slot for demo/staging/app" in str(refused)


def test_a_group_that_copies_its_asg_is_refused_naming_the_strategy(local_stack: Project
                                                                    ) -> None:
    """dev's groups copy their ASG (COPY_AUTO_SCALING_GROUP): blue_green_existing there
    is exit 2, saying to set blue_green_copy."""
    refused = _refused(local_stack, Combo("demo", "dev", "worker"), "worker.yml",
                       "deploy_strategy: blue_green_existing\n")
    assert "blue_green_existing needs a blue/green group with DISCOVER_EXISTING" in str(
        refused)
    assert "set deploy_strategy: blue_green_copy" in str(refused)


def test_asg_pair_under_another_strategy_is_a_config_error(local_stack: Project) -> None:
    with pytest.raises(InputError) as refused:
        Project.open(str(local_stack.root), local_mode=LOCAL,
                     overrides={"asg_pair": "[a, b]"}).resolve("demo", "dev", "app")
    assert refused.value.exit_code == 2
    assert "asg_pair: is set but deploy_strategy is blue_green_copy" in str(refused.value)
