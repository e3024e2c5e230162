"""`.builder/` is private and ignored by git; a copied root never controls the original
root's emulator; an AWS identity in another account than the env's is refused before
any call is made with it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from builder import private
from builder.aws import Aws, AwsTarget
from builder.bake import build
from builder.config.layout import Layout
from builder.config.models import Combo
from builder.errors import InputError, RefusedError
from builder.interrupts import Cancel
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
    for name in ("vars.json", "ubuntu.pkrvars.json"):  # resolved vars: maybe secrets
        assert stat.S_IMODE((rendered / name).stat().st_mode) == 0o600
    assert _modes(state) == ({0o700}, {0o600})
    listed = subprocess.run(["git", "-C", str(demo_root), "status", "--porcelain",
                             "--untracked-files=all"], capture_output=True, text=True,
                            check=True).stdout
    assert ".builder" not in listed
    assert "vars/demo/dev/common.yml" in listed


def _modes(folder: Path) -> tuple[set[int], set[int]]:
    """The modes of the folders and of the files under `folder`."""
    found = list(folder.rglob("*"))
    return ({stat.S_IMODE(p.stat().st_mode) for p in found if p.is_dir()},
            {stat.S_IMODE(p.stat().st_mode) for p in found if p.is_file()})


def test_private_writes_ignore_the_umask(tmp_path: Path) -> None:
    loose = tmp_path / "loose.json"
    loose.write_text("{}")
    loose.chmod(0o644)
    old = os.umask(0o002)
    try:
        deep = private.make_folders(tmp_path / "a" / "b" / "c")
        private.write_text(deep / "record.json", "{}")
        private.write_text(loose, "{}")  # an existing file is tightened
        with private.open_text(deep / "log") as log:
            log.write("line\n")
    finally:
        os.umask(old)
    assert _modes(tmp_path / "a") == ({0o700}, {0o600})
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600


def test_a_bake_failing_before_packer_leaves_no_build_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = Layout(tmp_path)
    earlier = private.make_folders(layout.state_dir / "builds" / "demo" / "dev" / "worker" / "b1")
    combo = Combo("demo", "dev", "app")
    the_plan = SimpleNamespace(
        resolved=SimpleNamespace(combo=combo, settings=SimpleNamespace(ami_name="demo-app")),
        env_aws=SimpleNamespace(client=lambda _service: None),
        source=SimpleNamespace(id="ami-0123", name="base"))

    def no_key(_folder: Path) -> tuple[Path, str]:
        raise InputError("ssh-keygen failed")

    monkeypatch.setattr(build, "_make_key", no_key)
    attempt = build._Build(SimpleNamespace(layout=layout), the_plan, None,  # type: ignore[arg-type]
                           lambda *_: None, Cancel(), 0.0)
    with pytest.raises(InputError):
        attempt.run()

    assert not attempt.artifacts.exists()
    assert not (layout.state_dir / "builds" / "demo" / "dev" / "app").exists()
    assert earlier.is_dir(), "other builds stay"


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
