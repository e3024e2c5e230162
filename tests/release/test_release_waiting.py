"""Releases caught while their deployment runs: stopped, timed out, raced by a second
release, interrupted (Ctrl-C, kill -9) and run again, and --no-wait.

Deployments step every second here, so each one is in progress for a while."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from builder.aws import images
from builder.aws import locks as lock_items
from builder.config.models import Combo
from builder.errors import DeployFailed, LockedError
from builder.local.mode import LOCAL
from builder.local.stack import hold_deployments
from builder.polling import poll_until
from builder.project import Project
from builder.release.release import ReleaseResult, release
from tests.release.emulated import Lines, clients, fleet_state, image_tags, make_ami

pytestmark = pytest.mark.local

local_deploy_step_seconds = 1.0


def active_deployments(project: Project, combo: Combo) -> list[str]:
    codedeploy = clients(project, combo)[2]
    return list(codedeploy.list_deployments(
        applicationName="demo", deploymentGroupName=f"demo-{combo.env}-{combo.comp}",
        includeOnlyStatuses=["Created", "Queued", "InProgress", "Ready"])["deployments"])


def wait_for_deployment(project: Project, combo: Combo) -> str:
    return poll_until(lambda: next(iter(active_deployments(project, combo)), None),
                      timeout_s=30, interval_s=0.05, what=f"a deployment of {combo}")


def wait_for_status(project: Project, combo: Combo, deployment_id: str, *statuses: str) -> None:
    codedeploy = clients(project, combo)[2]
    poll_until(lambda: codedeploy.get_deployment(deploymentId=deployment_id)[
        "deploymentInfo"]["status"] in statuses or None, timeout_s=30, interval_s=0.05,
        what=f"{deployment_id} reaching {statuses}")


def lock_item(project: Project, combo: Combo) -> dict[str, Any] | None:
    dynamodb = project.env_aws(project.resolve(combo.app, combo.env, combo.comp)).client(
        "dynamodb")
    item: dict[str, Any] | None = dynamodb.get_item(
        TableName=lock_items.TABLE, Key={lock_items.KEY: {"S": str(combo)}},
        ConsistentRead=True).get("Item")
    return item


def start_cli_release(root: Path, combo: Combo, ami: str) -> subprocess.Popen[str]:
    """`builder release` as its own process; returns once it has created the deployment."""
    child = subprocess.Popen(
        [sys.executable, "-m", "builder", "--root", str(root), "--local", "release",
         combo.app, combo.env, combo.comp, "--ami", ami],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    for line in child.stderr:
        if "created deployment" in line:
            return child
    child.wait()
    raise AssertionError(f"the release never created its deployment (exit {child.returncode})")


def test_a_stopped_deployment_rolls_back(local_stack: Project) -> None:
    project, combo = local_stack, Combo("demo", "dev", "app")
    ami = make_ami(project, combo)
    before = fleet_state(project, combo)
    outcome: list[BaseException | ReleaseResult] = []

    def run() -> None:
        try:
            outcome.append(release(project, combo, ami_id=ami, progress=Lines()))
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deployment_id = wait_for_deployment(project, combo)
    clients(project, combo)[2].stop_deployment(deploymentId=deployment_id)
    worker.join(60)

    [failed] = outcome
    assert isinstance(failed, DeployFailed), failed
    assert f"deployment {deployment_id} Stopped: MANUAL_STOP" in failed.message
    after = fleet_state(project, combo)
    assert (after.default_version, after.default_image) == (before.default_version,
                                                            before.default_image)
    assert (after.asg, after.asg_version) == (before.asg, before.asg_version)
    assert image_tags(project, combo, ami)[images.TAG_STATUS] == images.AmiStatus.FAILED
    assert lock_item(project, combo) is None


def test_a_deployment_past_the_timeout_is_stopped_and_rolled_back(local_stack: Project) -> None:
    project, combo = local_stack, Combo("demo", "dev", "worker")
    ami = make_ami(project, combo)
    before = fleet_state(project, combo)

    with pytest.raises(DeployFailed) as failed:
        release(project, combo, ami_id=ami, timeout_min=0.01, progress=Lines())

    assert "timed out after 0.01 min and was stopped (Stopped: MANUAL_STOP" in failed.value.message
    assert active_deployments(project, combo) == []
    after = fleet_state(project, combo)
    assert (after.default_version, after.asg, after.asg_version) == (
        before.default_version, before.asg, before.asg_version)
    assert image_tags(project, combo, ami)[images.TAG_STATUS] == images.AmiStatus.FAILED


# prod's groups copy their ASG (blue_green_copy); staging's deploy onto a pair of
# standing ones (blue_green_existing).
BOTH_STRATEGIES = pytest.mark.parametrize("combo", [
    Combo("demo", "prod", "worker"), Combo("demo", "staging", "app")], ids=str)


@BOTH_STRATEGIES
def test_of_two_concurrent_releases_exactly_one_proceeds(local_stack: Project,
                                                         combo: Combo) -> None:
    """Two releases at once, each with its own session as on two machines."""
    ami = make_ami(local_stack, combo)
    before = fleet_state(local_stack, combo)
    start = threading.Barrier(2)
    outcomes: list[BaseException | ReleaseResult] = []

    def run() -> None:
        project = Project.open(str(local_stack.root), local_mode=LOCAL)
        start.wait()
        try:
            outcomes.append(release(project, combo, ami_id=ami, progress=Lines()))
        except BaseException as exc:  # handed to the test thread
            outcomes.append(exc)

    workers = [threading.Thread(target=run) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)

    locked = [o for o in outcomes if isinstance(o, LockedError)]
    done = [o for o in outcomes if isinstance(o, ReleaseResult)]
    assert len(locked) == 1 and len(done) == 1, outcomes
    assert f"{combo}: locked by " in locked[0].message
    assert locked[0].exit_code == 1
    assert done[0].outcome == "verified"
    after = fleet_state(local_stack, combo)
    assert after.versions == before.versions + 1  # one new version, one deployment
    assert after.last_attempted == done[0].deployment_id


@BOTH_STRATEGIES
def test_an_interrupted_release_is_finished_by_running_it_again(local_stack: Project,
                                                                combo: Combo) -> None:
    project = local_stack
    ami = make_ami(project, combo)
    before = fleet_state(project, combo)

    # Held in progress: still running when the test looks, however slow the machine.
    hold_deployments(project, combo.app, combo.env, combo.comp, "InProgress")
    try:
        child = start_cli_release(project.root, combo, ami)  # past the launch template step
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=30)

        assert child.returncode == 130, stderr
        assert "goes on" in stderr and "interrupted by SIGINT" in stderr
        assert lock_item(project, combo) is None  # released on Ctrl-C
        [deployment_id] = active_deployments(project, combo)
    finally:
        hold_deployments(project, combo.app, combo.env, combo.comp, None)
    middle = fleet_state(project, combo)
    assert middle.default_image == ami and middle.versions == before.versions + 1
    interrupted = sorted((project.root / f".builder/releases/{combo}").glob("*.json"))
    assert json.loads(interrupted[-1].read_text())["outcome"] == "interrupted"

    again = release(project, combo, ami_id=ami, progress=Lines())

    assert again.attached and again.deployment_id == deployment_id
    assert again.outcome == "verified" and not again.version_created
    assert again.previous_version == before.default_version
    after = fleet_state(project, combo)
    assert after.versions == middle.versions and after.asg == again.asg_after != before.asg
    assert image_tags(project, combo, ami)[images.TAG_STATUS] == images.AmiStatus.VERIFIED
    # The group that served before: CodeDeploy removed it, or (a pair) it idles at 0.
    left = [(g["MinSize"], g["DesiredCapacity"], len(g["Instances"]))
            for g in clients(project, combo)[1].describe_auto_scaling_groups(
                AutoScalingGroupNames=[before.asg])["AutoScalingGroups"]]
    pair = project.resolve(combo.app, combo.env, combo.comp).settings.deploy_strategy == (
        "blue_green_existing")
    assert left == ([(0, 0, 0)] if pair else [])


def test_no_wait_returns_once_deployed_and_a_release_again_follows_it(local_stack: Project
                                                                       ) -> None:
    project, combo = local_stack, Combo("demo", "dev", "app")
    ami = make_ami(project, combo)
    hold_deployments(project, combo.app, combo.env, combo.comp, "Created")
    try:
        started = release(project, combo, ami_id=ami, wait=False, progress=Lines())
        assert started.outcome == "deploying" and started.deployment_status == "Created"
        assert active_deployments(project, combo) == [started.deployment_id]
    finally:
        hold_deployments(project, combo.app, combo.env, combo.comp, None)
    assert lock_item(project, combo) is None
    assert image_tags(project, combo, ami)[images.TAG_STATUS] == images.AmiStatus.BAKED
    assert started.deployment_id
    # It ends while nobody watches.
    wait_for_status(project, combo, started.deployment_id, "Succeeded")
    lines = Lines()

    followed = release(project, combo, ami_id=ami, progress=lines)

    assert followed.attached and followed.deployment_id == started.deployment_id
    assert f"following deployment {started.deployment_id} (Succeeded)" in "\n".join(lines.lines)
    assert followed.outcome == "verified" and followed.deployment_status == "Succeeded"
    assert image_tags(project, combo, ami)[images.TAG_STATUS] == images.AmiStatus.VERIFIED


def test_following_a_deployment_shows_its_lifecycle_events(local_stack: Project) -> None:
    project, combo = local_stack, Combo("demo", "staging", "app")
    ami = make_ami(project, combo)
    hold_deployments(project, combo.app, combo.env, combo.comp, "InProgress")
    lines = Lines()

    def progress(subject: str, message: str) -> None:
        lines(subject, message)
        if "; lifecycle: " in message:  # seen in progress: it may end now
            hold_deployments(project, combo.app, combo.env, combo.comp, None)

    try:
        started = release(project, combo, ami_id=ami, wait=False, progress=Lines())
        assert started.deployment_id
        wait_for_status(project, combo, started.deployment_id, "InProgress")
        followed = release(project, combo, ami_id=ami, progress=progress)
    finally:
        hold_deployments(project, combo.app, combo.env, combo.comp, None)

    assert followed.attached and followed.outcome == "verified"
    lifecycle = [line for line in lines.lines if "; lifecycle: " in line]
    assert lifecycle, lines.lines
    assert re.search(r"InProgress \(instances: 1 in progress\); lifecycle: "
                     r"1 Green (at \w+|succeeded), 1 Blue (pending|at \w+)$", lifecycle[0])


def test_a_killed_release_keeps_its_lock_until_it_expires_or_is_broken(local_stack: Project
                                                                         ) -> None:
    project, combo = local_stack, Combo("demo", "prod", "worker")
    ami = make_ami(project, combo)
    child = start_cli_release(project.root, combo, ami)
    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=30)

    item = lock_item(project, combo)
    assert item is not None and item["owner"]["S"].endswith(f":{child.pid}")
    with pytest.raises(LockedError, match=f"locked by .*:{child.pid} since "):
        release(project, combo, ami_id=ami, progress=Lines())

    taken = release(project, combo, ami_id=ami, break_lock=True, progress=Lines())

    assert taken.attached and taken.outcome == "verified"
    assert lock_item(project, combo) is None
