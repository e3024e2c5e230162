"""`builder release` by instance refresh (deploy_strategy: instance_refresh, demo prod
app) against the local stack: the ASG's instances replaced in place, checkpoints, the
record; a refresh that fails and rolls back by itself; a timeout; an interrupted release
run again; the lock; refusals. The calls made: tests/release/test_release.py.

Refreshes step every 0.2 s here (two instances: a batch each, a step's pause at the 50%
checkpoint); tests that must catch one in progress hold it there."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from builder.aws import fleet, images
from builder.aws import locks as lock_items
from builder.config.models import Combo
from builder.errors import ConfigError, DeployFailed, InputError, LockedError
from builder.local.mode import LOCAL
from builder.local.stack import fail_next_refresh, hold_refreshes
from builder.polling import poll_until
from builder.project import Project
from builder.release.release import release
from tests.release.emulated import Lines, clients, fleet_state, image_tags, make_ami

pytestmark = pytest.mark.local

PROD_APP = Combo("demo", "prod", "app")


@dataclass(frozen=True)
class RefreshedFleet:
    """The comp's ASG, what its instances run, and the launch template's default."""

    asg_version: str
    instance_images: tuple[str, ...]
    default_version: int
    default_image: str
    versions: int


def fleet_now(project: Project, combo: Combo = PROD_APP) -> RefreshedFleet:
    settings = project.resolve(combo.app, combo.env, combo.comp).settings
    ec2, autoscaling, _ = clients(project, combo)
    [group] = autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[settings.auto_scaling_group])["AutoScalingGroups"]
    ids = [i["InstanceId"] for i in group["Instances"]]
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"] if ids else []
    running = sorted(i["ImageId"] for r in reservations for i in r["Instances"])
    default = fleet.version(ec2, template_name=settings.launch_template_name)
    versions = len(fleet.all_versions(ec2, settings.launch_template_name))
    return RefreshedFleet(group["LaunchTemplate"]["Version"], tuple(running),
                          default.number, default.image_id, versions)


def refreshes(project: Project, combo: Combo = PROD_APP) -> list[fleet.Refresh]:
    settings = project.resolve(combo.app, combo.env, combo.comp).settings
    return fleet.refreshes(clients(project, combo)[1], settings.auto_scaling_group)


def test_a_refresh_replaces_the_instances_in_place_and_is_verified(local_stack: Project
                                                                  ) -> None:
    project = local_stack
    before = fleet_now(project)
    ami = make_ami(project, PROD_APP)
    lines = Lines()

    result = release(project, PROD_APP, ami_id=ami, progress=lines)

    after = fleet_now(project)
    assert (result.outcome, result.strategy, result.deployment_status) == (
        "verified", "instance_refresh", "Successful")
    # Pinned to the new version by number (the refresh's desired configuration), every
    # instance replaced by one of the AMI, in place: the ASG keeps its name.
    assert after.asg_version == str(result.new_version)
    assert after.instance_images == (ami, ami) != before.instance_images
    assert result.asg_before == result.asg_after == "demo-prod-app"
    assert (after.default_version, after.default_image) == (result.new_version, ami)
    [latest, *_] = refreshes(project)
    assert latest.id == result.deployment_id and latest.version == str(result.new_version)
    assert latest.checkpoints == (50,) and result.checkpoints == (50,)
    assert image_tags(project, PROD_APP, ami)[images.TAG_STATUS] == images.AmiStatus.VERIFIED
    text = "\n".join(lines.lines)
    assert f"created instance refresh {result.deployment_id}" in text
    assert "checkpoint 50% reached" in text.lower()
    assert "(in-place) installs s3://" in text  # the in-place group keeps deploying
    assert result.record is not None
    record = json.loads(result.record.read_text())
    assert record["deployment_id"] == result.deployment_id and record["checkpoints"] == [50]
    assert "checkpoints reached: 50%" in result.to_text()


def test_a_failed_refresh_is_rolled_back_by_auto_scaling_and_the_release(
        local_stack: Project) -> None:
    project = local_stack
    ami = make_ami(project, PROD_APP)
    before = fleet_now(project)
    fail_next_refresh(project, "demo", "prod", "app")

    with pytest.raises(DeployFailed) as failed:
        release(project, PROD_APP, ami_id=ami, progress=Lines())

    assert failed.value.exit_code == 1
    [latest, *_] = refreshes(project)
    assert latest.status == "RollbackSuccessful"
    assert f"instance refresh {latest.id} RollbackSuccessful: " in failed.value.message
    assert "failed their health checks" in failed.value.message
    assert f"Auto Scaling rolled instance refresh {latest.id} back" in failed.value.message
    after = fleet_now(project)
    # The default, the ASG's version and the instances' AMI are as before; one version more.
    assert (after.default_version, after.default_image) == (before.default_version,
                                                            before.default_image)
    assert after.asg_version == before.asg_version
    assert after.instance_images == before.instance_images and ami not in after.instance_images
    assert after.versions == before.versions + 1
    assert image_tags(project, PROD_APP, ami)[images.TAG_STATUS] == images.AmiStatus.FAILED
    assert lock_item(project) is None


def test_a_refresh_past_the_timeout_is_rolled_back(local_stack: Project) -> None:
    project = local_stack
    ami = make_ami(project, PROD_APP)
    before = fleet_now(project)
    hold_refreshes(project, "demo", "prod", "app", "Pending")  # never done in time
    try:
        with pytest.raises(DeployFailed) as failed:
            release(project, PROD_APP, ami_id=ami, timeout_min=0.002, progress=Lines())
    finally:
        hold_refreshes(project, "demo", "prod", "app", None)

    [latest, *_] = refreshes(project)
    assert "timed out after 0.002 min and was stopped (RollbackSuccessful" in (
        failed.value.message)
    assert latest.status == "RollbackSuccessful"
    after = fleet_now(project)
    assert (after.default_version, after.asg_version, after.instance_images) == (
        before.default_version, before.asg_version, before.instance_images)
    assert image_tags(project, PROD_APP, ami)[images.TAG_STATUS] == images.AmiStatus.FAILED


def lock_item(project: Project, combo: Combo = PROD_APP) -> dict[str, Any] | None:
    dynamodb = project.env_aws(project.resolve(combo.app, combo.env, combo.comp)).client(
        "dynamodb")
    item: dict[str, Any] | None = dynamodb.get_item(
        TableName=lock_items.TABLE, Key={lock_items.KEY: {"S": str(combo)}},
        ConsistentRead=True).get("Item")
    return item


def test_an_interrupted_release_follows_its_refresh_when_run_again(local_stack: Project
                                                                  ) -> None:
    project = local_stack
    ami = make_ami(project, PROD_APP)
    before = fleet_now(project)
    # Held: still running when the test looks, however slow the machine.
    hold_refreshes(project, "demo", "prod", "app", "Pending")
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "builder", "--root", str(project.root), "--local",
             "release", "demo", "prod", "app", "--ami", ami],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stderr is not None
        for line in child.stderr:
            if "created instance refresh" in line:
                break
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=30)

        assert child.returncode == 130, stderr
        assert "goes on" in stderr and "interrupted by SIGINT" in stderr
        assert lock_item(project) is None  # released on Ctrl-C
        [running] = [r for r in refreshes(project) if not r.done]
    finally:
        hold_refreshes(project, "demo", "prod", "app", None)
    lines = Lines()

    again = release(project, PROD_APP, ami_id=ami, progress=lines)

    assert again.attached and again.deployment_id == running.id
    assert f"following instance refresh {running.id}" in "\n".join(lines.lines)
    assert again.outcome == "verified" and not again.version_created
    assert again.previous_version == before.default_version
    after = fleet_now(project)
    assert after.versions == before.versions + 1 and after.instance_images == (ami, ami)
    assert image_tags(project, PROD_APP, ami)[images.TAG_STATUS] == images.AmiStatus.VERIFIED


def test_a_second_release_meets_the_lock_of_the_first(local_stack: Project) -> None:
    project = local_stack
    ami, other = make_ami(project, PROD_APP), make_ami(project, PROD_APP)
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(release(project, PROD_APP, ami_id=ami, progress=Lines()))
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    hold_refreshes(project, "demo", "prod", "app", "Pending")
    worker = threading.Thread(target=run)
    try:
        worker.start()
        poll_until(lambda: next((r for r in refreshes(project) if not r.done), None),
                   timeout_s=30, interval_s=0.05, what="the first release's refresh")
        with pytest.raises(LockedError, match="demo/prod/app: locked by "):
            release(Project.open(str(project.root), local_mode=LOCAL), PROD_APP,
                    ami_id=other, progress=Lines())
    finally:
        hold_refreshes(project, "demo", "prod", "app", None)
        worker.join(60)

    [first] = outcome
    assert getattr(first, "outcome", first) == "verified"
    assert fleet_now(project).instance_images == (ami, ami)
    assert image_tags(project, PROD_APP, other)[images.TAG_STATUS] == images.AmiStatus.BAKED


def test_a_fleet_without_codedeploy_is_refreshed_by_its_auto_scaling_group(
        local_stack: Project) -> None:
    project = local_stack
    ami = make_ami(project, PROD_APP)
    layer = project.root / "vars/demo/prod/app.yml"
    kept = layer.read_text()
    layer.write_text(kept + "codedeploy_deployment_group: none-such\n")
    try:
        lines = Lines()
        result = release(Project.open(str(project.root), local_mode=LOCAL), PROD_APP,
                         ami_id=ami, progress=lines)
    finally:
        layer.write_text(kept)

    assert (result.outcome, result.revision, result.asg_after) == (
        "verified", None, "demo-prod-app")
    with pytest.raises(InputError, match="--revision needs a CodeDeploy deployment"):
        release(project, PROD_APP, ami_id=ami, revision="s3://bucket/app.zip")
    assert not any("installs" in line for line in lines.lines)
    assert fleet_now(project).instance_images == (ami, ami)


def test_a_blue_green_group_or_another_template_is_refused_before_any_change(
        local_stack: Project) -> None:
    """instance_refresh where the deployment group is blue/green (dev worker), where the
    ASG is missing, or where it launches another template: exit 2 naming what to set,
    nothing written."""
    project, combo = local_stack, Combo("demo", "dev", "worker")
    ami = make_ami(project, combo)
    app_asg = fleet_state(project, Combo("demo", "dev", "app")).asg
    layer = project.root / "vars/demo/dev/worker.yml"
    layer.write_text("deploy_strategy: instance_refresh\n")
    try:
        with pytest.raises(ConfigError) as blue_green:
            release(Project.open(str(project.root), local_mode=LOCAL), combo, ami_id=ami)
        layer.write_text("deploy_strategy: instance_refresh\n"
                         "codedeploy_deployment_group: none-such\n"
                         "auto_scaling_group: demo-prod-app\n")
        with pytest.raises(ConfigError) as missing:
            release(Project.open(str(project.root), local_mode=LOCAL), combo, ami_id=ami)
        layer.write_text("deploy_strategy: instance_refresh\n"
                         "codedeploy_deployment_group: none-such\n"
                         f"auto_scaling_group: {app_asg}\n")
        with pytest.raises(ConfigError) as other_template:
            release(Project.open(str(project.root), local_mode=LOCAL), combo, ami_id=ami)
    finally:
        layer.unlink()
    assert blue_green.value.exit_code == 2
    assert "instance_refresh needs an in-place group (or none)" in str(blue_green.value)
    assert "set deploy_strategy: blue_green_copy" in str(blue_green.value)
    assert missing.value.exit_code == 2
    assert "auto_scaling_group" in str(missing.value)
    assert "demo-prod-app not found in 111111111111 eu-west-1" in str(missing.value)
    assert other_template.value.exit_code == 2
    assert f"Auto Scaling group {app_asg} launches from lt-" in str(other_template.value)
    assert "not demo-dev-worker" in str(other_template.value)
    assert image_tags(project, combo, ami)[images.TAG_STATUS] == images.AmiStatus.BAKED


def test_a_refresh_cancelled_half_way_is_put_back_by_another(local_stack: Project) -> None:
    """Cancelled (here by someone else) after it replaced one instance of two: no
    rollback of its own, so the release starts a refresh back to the version before."""
    project = local_stack
    settings = project.resolve("demo", "prod", "app").settings
    autoscaling = clients(project, PROD_APP)[1]
    ami = make_ami(project, PROD_APP)
    before = fleet_now(project)
    lines = Lines()

    def progress(subject: str, message: str) -> None:
        lines(subject, message)
        if "(50% replaced" in message:  # half way, held at its checkpoint
            fleet.cancel_refresh(autoscaling, settings.auto_scaling_group)
            hold_refreshes(project, "demo", "prod", "app", None)

    hold_refreshes(project, "demo", "prod", "app", "Checkpoint")
    try:
        with pytest.raises(DeployFailed) as failed:
            release(project, PROD_APP, ami_id=ami, progress=progress)
    finally:
        hold_refreshes(project, "demo", "prod", "app", None)

    cancelled, *_ = [r for r in refreshes(project) if r.status == "Cancelled"]
    assert f"instance refresh {cancelled.id} Cancelled" in failed.value.message
    [back] = [r for r in refreshes(project) if not r.done]
    assert (f"instance refresh {back.id} started to put the replaced instances back on "
            f"version {before.asg_version}") in failed.value.message
    assert back.version == before.asg_version
    poll_until(lambda: fleet.refresh(autoscaling, settings.auto_scaling_group,
                                     back.id).done or None,
               timeout_s=30, interval_s=0.1, what="the refresh back")
    after = fleet_now(project)
    assert (after.default_version, after.asg_version) == (before.default_version,
                                                          before.asg_version)
    assert after.instance_images == before.instance_images
    assert image_tags(project, PROD_APP, ami)[images.TAG_STATUS] == images.AmiStatus.FAILED
