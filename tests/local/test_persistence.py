"""The local stack keeps its state across `local down`/`up` and a SIGKILL of the
emulator; `local reset` forgets it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from builder.aws import fleet
from builder.aws import locks as lock_items
from builder.config.models import Combo
from builder.errors import LockedError
from builder.local import control, stack
from builder.local.mode import LOCAL
from builder.local.state import live_server, running_endpoint, server_info
from builder.polling import poll_until
from builder.project import Project
from builder.release import lock
from builder.release.release import release
from tests.conftest import copy_demo
from tests.release.emulated import make_ami

pytestmark = [pytest.mark.local, pytest.mark.slow]

COMBO = Combo("demo", "dev", "app")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    project = Project.open(str(copy_demo(tmp_path / "infra")), local_mode=LOCAL)
    stack.up(project, build_host=False, deploy_step_seconds=0.2)
    try:
        yield project
    finally:
        stack.down(project.layout, force=True)


def _fresh(project: Project) -> Project:
    """The root opened anew: a Project keeps its sessions (the endpoint and the assumed
    roles' credentials of the stack it first talked to), as a CLI process would."""
    return Project.open(str(project.root), local_mode=LOCAL)


def _ami_exists(project: Project, ami: str) -> bool:
    resolved = project.resolve(COMBO.app, COMBO.env, COMBO.comp)
    ec2 = project.env_aws(resolved).client("ec2")
    try:
        return bool(ec2.describe_images(Owners=["self"], ImageIds=[ami])["Images"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "InvalidAMIID.NotFound":
            return False
        raise


def _template_version(project: Project, version: int) -> str | None:
    """The image of one version of the comp's launch template, None when there is none."""
    resolved = project.resolve(COMBO.app, COMBO.env, COMBO.comp)
    ec2 = project.env_aws(resolved).client("ec2")
    versions = ec2.describe_launch_template_versions(
        LaunchTemplateName=resolved.settings.launch_template_name)["LaunchTemplateVersions"]
    found = [v for v in versions if v["VersionNumber"] == version]
    return found[0]["LaunchTemplateData"].get("ImageId") if found else None


def _new_version(project: Project, ami: str) -> int:
    resolved = project.resolve(COMBO.app, COMBO.env, COMBO.comp)
    ec2 = project.env_aws(resolved).client("ec2")
    made = ec2.create_launch_template_version(
        LaunchTemplateName=resolved.settings.launch_template_name, SourceVersion="$Latest",
        LaunchTemplateData={"ImageId": ami})
    return int(made["LaunchTemplateVersion"]["VersionNumber"])


def _saved(project: Project) -> None:
    """Wait for the emulator to save what was just done (within its second)."""
    endpoint = running_endpoint(project.layout)
    before = control.call(endpoint, "state")["saves"]
    poll_until(lambda: control.call(endpoint, "state")["saves"] > before or None,
               timeout_s=10, interval_s=0.1, what="the emulator saving its state")


def _locked(project: Project) -> bool:
    resolved = project.resolve(COMBO.app, COMBO.env, COMBO.comp)
    try:
        with lock.held(project.env_aws(resolved), COMBO, minutes=5):
            return False
    except LockedError:
        return True


def test_down_up_kill_and_reset(project: Project) -> None:
    layout = project.layout
    images = layout.state_dir / "local" / "images"
    ami = make_ami(project, COMBO)
    version = _new_version(project, ami)
    (images / ami).mkdir(parents=True)
    (images / "ami-0123456789abcdef0").mkdir()  # the image of an AMI the stack never had
    resolved = project.resolve(COMBO.app, COMBO.env, COMBO.comp)
    # A lock of a live holder (this test process) that a crash never let go of.
    dynamodb = project.env_aws(resolved).client("dynamodb")
    lock_items.create_table(dynamodb)
    now = int(time.time())
    assert lock_items.put(dynamodb, lock_items.LockItem(
        lock.key(COMBO), lock.owner_name(), "token", "now", now + 1800), now=now) is None
    stack.down(layout)
    assert server_info(layout) is None
    project = _fresh(project)
    again = stack.up(project, build_host=False, deploy_step_seconds=0.2)

    assert again.restore_error is None
    assert _ami_exists(project, ami)
    assert _template_version(project, version) == ami
    assert _locked(project)
    assert again.images_removed == ("ami-0123456789abcdef0",)
    assert (images / ami).is_dir()

    # SIGKILL: what was saved before it is kept.
    second = make_ami(project, COMBO)
    _saved(project)
    info = server_info(layout)
    assert info is not None
    os.kill(int(info["pid"]), signal.SIGKILL)
    poll_until(lambda: live_server(layout) is None or None, timeout_s=10, interval_s=0.05,
               what="the emulator gone")
    project = _fresh(project)
    stack.up(project, build_host=False, deploy_step_seconds=0.2)
    assert _ami_exists(project, second)
    assert _ami_exists(project, ami)
    assert _locked(project)

    # reset: an empty stack (the resources `up` makes, nothing else).
    forgot = stack.reset(layout)
    assert "state.pickle" in forgot.removed and "images" in forgot.removed
    assert not images.exists()
    project = _fresh(project)
    stack.up(project, build_host=False, deploy_step_seconds=0.2)
    assert not _ami_exists(project, ami)
    assert _template_version(project, version) is None
    assert not _locked(project)


def test_a_state_that_cannot_be_read_is_set_aside(tmp_path: Path) -> None:
    project = Project.open(str(copy_demo(tmp_path / "infra")), local_mode=LOCAL)
    folder = project.layout.state_dir / "local"
    folder.mkdir(parents=True)
    (folder / "state.pickle").write_bytes(b"not a snapshot")
    try:
        started = stack.up(project, build_host=False, deploy_step_seconds=0.2)
    finally:
        stack.down(project.layout, force=True)
    assert started.restore_error is not None
    assert "state.pickle" in started.restore_error
    assert "could not be restored, started empty" in started.to_text()
    assert (folder / "state.pickle.unreadable").read_bytes() == b"not a snapshot"
    assert started.resources is not None  # the stack was made anew


def test_iam_enforcement_is_kept(tmp_path: Path) -> None:
    project = Project.open(str(copy_demo(tmp_path / "infra")), local_mode=LOCAL)
    stack.up(project, build_host=False, deploy_step_seconds=0.2, enforce_iam=True)
    try:
        stack.down(project.layout)
        project = _fresh(project)
        again = stack.up(project, build_host=False, deploy_step_seconds=0.2)
        assert again.restore_error is None
        assert control.call(running_endpoint(project.layout), "iam")["enforced"] is True
    finally:
        stack.down(project.layout, force=True)


def test_an_instance_refresh_goes_on_after_down_and_up(project: Project) -> None:
    """prod app releases by instance refresh: one held in progress (the hold is kept
    too) is where it was after `down`/`up`, and a release again follows it to the end."""
    prod_app = Combo("demo", "prod", "app")
    ami = make_ami(project, prod_app)
    stack.hold_refreshes(project, "demo", "prod", "app", "Pending")
    started = release(project, prod_app, ami_id=ami, wait=False)
    assert started.outcome == "deploying" and started.deployment_id
    stack.down(project.layout)  # saves on the way out
    project = _fresh(project)
    stack.up(project, build_host=False, deploy_step_seconds=0.2)
    autoscaling = project.env_aws(project.resolve("demo", "prod", "app")).client("autoscaling")
    [kept] = fleet.refreshes(autoscaling, "demo-prod-app", (started.deployment_id,))
    assert not kept.done  # still held where it was
    stack.hold_refreshes(project, "demo", "prod", "app", None)

    followed = release(project, prod_app, ami_id=ami)

    assert followed.attached and followed.deployment_id == started.deployment_id
    assert followed.outcome == "verified" and not followed.version_created
