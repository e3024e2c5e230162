"""`.builder/` is private and ignored by git; a copied root never controls the original
root's emulator; an AWS identity in another account than the env's is refused before
any call is made with it."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from builder.aws import Aws, AwsTarget
from builder.config.layout import Layout
from builder.errors import RefusedError
from builder.local import stack
from builder.local.state import live_server
from builder.project import Project
from tests.conftest import run_builder

pytestmark = pytest.mark.local


def test_state_folder_is_private_and_ignored(demo_root: Path) -> None:
    subprocess.run(["git", "-C", str(demo_root), "init", "-q"], check=True)
    done = run_builder("render", "demo", "dev", "app", root=demo_root)
    assert done.returncode == 0, done.stderr
    state = demo_root / ".builder"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert (state / ".gitignore").read_text().splitlines()[-1] == "*"
    assert stat.S_IMODE((state / ".gitignore").stat().st_mode) == 0o600
    rendered = state / "render" / "demo" / "dev" / "app"
    for private in ("vars.json", "ubuntu.pkrvars.json"):  # resolved vars: maybe secrets
        assert stat.S_IMODE((rendered / private).stat().st_mode) == 0o600
    listed = subprocess.run(["git", "-C", str(demo_root), "status", "--porcelain",
                             "--untracked-files=all"], capture_output=True, text=True,
                            check=True).stdout
    assert ".builder" not in listed
    assert "vars/demo/dev/common.yml" in listed


def test_an_existing_state_folder_is_made_private(demo_root: Path) -> None:
    (demo_root / ".builder").mkdir(mode=0o755)
    (demo_root / ".builder").chmod(0o755)
    Layout(demo_root).state_dir  # noqa: B018 - reaching it is what makes it private
    assert stat.S_IMODE((demo_root / ".builder").stat().st_mode) == 0o700


def test_local_down_in_a_copied_root_leaves_the_original_running(
        local_stack: Project, tmp_path: Path) -> None:
    original = local_stack.layout
    copy = tmp_path / "copy"
    shutil.copytree(local_stack.root, copy, symlinks=True)
    assert live_server(original) is not None
    assert live_server(Layout(copy)) is None  # server.json came along, the stack did not

    status = run_builder("--local", "status", "demo", root=copy)
    assert status.returncode == 2
    assert "not running here" in status.stderr
    down = stack.down(Layout(copy))
    assert not down.stopped
    assert live_server(original) is not None


def test_an_identity_of_another_account_is_refused(local_stack: Project) -> None:
    aws = Aws(local_endpoint=local_stack.aws.local_endpoint)
    target = AwsTarget("111111111111", "eu-west-1",
                       role_arn="arn:aws:iam::222222222222:role/builder")
    with pytest.raises(RefusedError) as refused:
        aws.env(target).client("ec2")
    message = refused.value.message
    assert "role arn:aws:iam::222222222222:role/builder is account 222222222222" in message
    assert "aws_account_id is 111111111111" in message
    assert aws.call_log.counts["sts.GetCallerIdentity"] == 1
    assert set(aws.call_log.counts) <= {"sts.AssumeRole", "sts.GetCallerIdentity"}


def test_the_identity_is_checked_once_per_account(local_stack: Project) -> None:
    aws = Aws(local_endpoint=local_stack.aws.local_endpoint)
    env_aws = aws.env(AwsTarget("111111111111", "eu-west-1"))
    for service in ("ec2", "autoscaling", "codedeploy", "ec2"):
        env_aws.client(service)
    assert aws.call_log.counts["sts.GetCallerIdentity"] == 1
