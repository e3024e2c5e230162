"""Faults during real bakes (Packer, the local build host, Ansible): SIGINT and SIGTERM at
Packer's image and tag phases and after the AMI is registered, a file-system fault
after registration, kill -9 then `reap`, two bakes of one comp at once. After each: no
incomplete AMI, snapshot, instance, key pair, security group, build host, mount, temp
folder or lock is left, and a re-run ends as an uninterrupted bake does."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.aws import EnvAws
from builder.aws import images as amis
from builder.aws.session import SESSION_SECONDS_ENV
from builder.config.models import Combo
from builder.local.mode import LOCAL
from builder.project import Project
from tests.bake.test_interrupts import _descendants
from tests.faults.leftovers import (
    builder_env,
    last_line,
    read_until,
    record,
    run,
    seen,
    start,
)

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.local]

APP = Combo("demo", "dev", "app")


@pytest.fixture
def dev(bake_root: Path) -> EnvAws:
    project = Project.open(str(bake_root), local_mode=LOCAL)
    return project.env_aws(project.resolve("demo", "dev", "app"))


@pytest.fixture
def tmp() -> Iterator[Path]:
    """The runs' TMPDIR: builder's private folders must be gone from it afterwards.
    Short, as $TMPDIR usually is: the provisioning socket's path must fit AF_UNIX's."""
    folder = Path(tempfile.mkdtemp(prefix="faults-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def complete_bake(root: Path, tmp: Path, dev: EnvAws, *args: str) -> str:
    """Bake to the end; the AMI is tagged baked, and only now."""
    done = run(root, tmp, "bake", "demo", "dev", "app", "--json", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    image = amis.describe(dev.client("ec2"), image_ids=[result["ami_id"]])[0]
    assert image.status == amis.AmiStatus.BAKED
    if not result["skipped"]:  # unique per run: two bakes in one second differ
        assert image.name.endswith(image.tags[amis.TAG_RUN_ID][:8])
    return "baked" if not result["skipped"] else "unchanged"


@pytest.mark.parametrize(
    ("case", "signal_at", "code"),
    [
        ("SIGINT in packer: image", "SIGINT@^packer: image$", 130),
        ("SIGINT in packer: tag", "SIGINT@^packer: tag$", 130),
        ("SIGTERM after registration", r"SIGTERM@^AMI ami-\S+ .* is available$", 143),
        ("SIGINT while saving the local image", "SIGINT@^saving the local image$", 130),
    ],
)
def test_an_interrupted_bake_leaves_no_ami(bake_root: Path, dev: EnvAws, tmp: Path, case: str,
                                           signal_at: str, code: int) -> None:
    before = seen(dev, bake_root, tmp)

    done = run(bake_root, tmp, "bake", "demo", "dev", "app", "--force", signal_at=signal_at)

    assert done.returncode == code, done.stderr[-3000:]
    assert "interrupted" in last_line(done)
    left = seen(dev, bake_root, tmp).new_since(before)
    assert not any(left.values()), left
    # The interrupted run's AMI is gone, so a re-run either bakes or (a test before
    # baked these inputs to the end) finds that complete AMI, as an uninterrupted run would.
    rerun = complete_bake(bake_root, tmp, dev)
    record(f"bake: {case}", signal_at.split("@", maxsplit=1)[0], left, rerun)


def test_a_file_system_fault_after_registration(bake_root: Path, dev: EnvAws,
                                                tmp: Path) -> None:
    before = seen(dev, bake_root, tmp)
    images = bake_root / ".builder" / "local" / "images"
    images.mkdir(parents=True, exist_ok=True)
    moved = images.with_name("images.kept")
    images.rename(moved)
    images.write_text("not a folder")  # saving the local image fails
    try:
        done = run(bake_root, tmp, "bake", "demo", "dev", "app", "--force")
    finally:
        images.unlink()
        moved.rename(images)

    assert done.returncode == 1, done.stderr[-3000:]
    assert last_line(done).startswith("builder: ") and "images/ami-" in last_line(done)
    assert "Traceback" not in done.stderr
    left = seen(dev, bake_root, tmp).new_since(before)
    assert not any(left.values()), left
    rerun = complete_bake(bake_root, tmp, dev, "--force")
    record("bake: local images folder not a folder", "ENOTDIR", left, rerun)


def test_kill_9_then_reap(bake_root: Path, dev: EnvAws, tmp: Path) -> None:
    before = seen(dev, bake_root, tmp)
    child = start(bake_root, tmp, "bake", "demo", "dev", "app", "--force")
    read_until(child, r"packer-app\.yml: task 3/")
    for pid in [child.pid, *_descendants(child.pid)]:  # builder, Packer, Ansible at once
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    child.communicate()
    crashed = seen(dev, bake_root, tmp).new_since(before)
    assert crashed["instances"] and crashed["key_pairs"] and crashed["build_hosts"]
    assert crashed["temp_folders"]  # the run's SSH key is in there
    assert crashed["locks"] == ["demo/dev/app bake"]

    listed = run(bake_root, tmp, "reap", "--dry-run", "--json")
    assert listed.returncode == 0, listed.stderr
    kinds = json.loads(listed.stdout)["by_kind"]
    assert [i.rsplit("/", 1)[1] for i in kinds["instances"]] == crashed["instances"]
    assert kinds["local_build_hosts"] == crashed["build_hosts"]
    assert [Path(p).name for p in kinds["temp_folders"]] == crashed["temp_folders"]

    # The default age: the owning process is gone, so everything goes now.
    reaped = run(bake_root, tmp, "reap")
    assert reaped.returncode == 0, reaped.stderr
    left = seen(dev, bake_root, tmp).new_since(before)
    assert left.pop("locks") == ["demo/dev/app bake"]  # a lock outlives a kill -9 ...
    assert not any(left.values()), left
    locked = run(bake_root, tmp, "bake", "demo", "dev", "app", "--force")
    assert locked.returncode == 1
    assert "demo/dev/app bake: locked by " in last_line(locked)
    assert "that process is gone (killed): --break-lock" in last_line(locked)
    rerun = complete_bake(bake_root, tmp, dev, "--force", "--break-lock")  # ... till broken
    assert not any(seen(dev, bake_root, tmp).new_since(before)["locks"])
    record("bake: kill -9 during provisioning, reap", "SIGKILL", left, f"{rerun} (--break-lock)")


def test_two_bakes_of_one_comp_at_once(bake_root: Path, dev: EnvAws, tmp: Path) -> None:
    before = seen(dev, bake_root, tmp)
    inputs = ("-e", "faults_case=two-at-once")  # inputs no earlier test baked
    first = start(bake_root, tmp, *inputs, "bake", "demo", "dev", "app", "--json")
    read_until(first, r"packer: provision")

    second = run(bake_root, tmp, "bake", "demo", "dev", "app", "--force")
    assert second.returncode == 1
    assert "demo/dev/app bake: locked by " in last_line(second)
    assert "--lock-wait" in last_line(second)

    # Waiting for the lock: the first bake's AMI has these inputs, so nothing to bake.
    waited = run(bake_root, tmp, *inputs, "bake", "demo", "dev", "app", "--lock-wait", "300",
                 "--json")
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    assert waited.returncode == 0, waited.stderr[-3000:]
    assert "waiting up to 300s for the bake lock" in waited.stderr
    assert json.loads(waited.stdout)["ami_id"] == json.loads(out)["ami_id"]
    assert json.loads(waited.stdout)["skipped"] is True

    left = seen(dev, bake_root, tmp).new_since(before)
    assert not any(left.values()), left
    record("bake: two at once (one fails, one waits)", "concurrency", left, "unchanged")


def test_a_read_only_state_folder(bake_root: Path, dev: EnvAws, tmp: Path) -> None:
    before = seen(dev, bake_root, tmp)
    builds = bake_root / ".builder" / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", str(builds), str(builds)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(builds)], check=True)
        done = run(bake_root, tmp, "bake", "demo", "dev", "app", "--force")
    finally:
        subprocess.run(["umount", str(builds)], check=True)

    assert done.returncode == 1, done.stderr[-3000:]
    assert last_line(done).startswith("builder: ")
    assert ".builder/builds/demo" in last_line(done) and "Read-only file system" in last_line(done)
    assert "Traceback" not in done.stderr
    left = seen(dev, bake_root, tmp).new_since(before)
    assert not any(left.values()), left
    rerun = complete_bake(bake_root, tmp, dev)
    record("bake: read-only .builder/builds", "EROFS", left, rerun)


def test_the_artifacts_folder_deleted_during_a_bake(bake_root: Path, dev: EnvAws,
                                                    tmp: Path) -> None:
    # The bake stops itself (SIGSTOP) once Packer makes the image; the folder goes then.
    child = start(bake_root, tmp, "bake", "demo", "dev", "app", "--force", "--json",
                  signal_at="SIGSTOP@^packer: image$")
    lines = read_until(child, r"packer: image$")
    build_id = next(line.split("; build ")[1].strip() for line in lines if "; build " in line)
    artifacts = bake_root / ".builder" / "builds" / "demo" / "dev" / "app" / build_id
    try:
        shutil.rmtree(artifacts)
    finally:
        os.kill(child.pid, signal.SIGCONT)
    stdout, stderr = child.communicate(timeout=600)

    assert child.returncode == 0, stderr[-3000:]
    result = json.loads(stdout)
    assert len(result["notes"]) == 1, result
    assert "the artifacts folder was deleted during the bake and made again" in \
        result["notes"][0]
    assert "packer.log" in result["notes"][0] and "fingerprint.json" in result["notes"][0]
    assert json.loads((artifacts / "result.json").read_text())["notes"] == result["notes"]
    image = amis.describe(dev.client("ec2"), image_ids=[result["ami_id"]])[0]
    assert image.status == amis.AmiStatus.BAKED
    record("bake: artifacts folder deleted mid-bake", "rm -r", {},
           "baked; the loss noted in the result")


def test_a_bake_outlives_its_role_session(bake_root: Path, dev: EnvAws, tmp: Path) -> None:
    """With 12-second role sessions, Packer (its AWS SDK, through the private config's
    credential_process) comes back for credentials as they expire, and the bake ends."""
    env = {**builder_env(tmp), SESSION_SECONDS_ENV: "12",
           # Credentials in builder's own environment must not reach Packer.
           "AWS_ACCESS_KEY_ID": "AKIASTATICNOTFORPACKER", "AWS_SECRET_ACCESS_KEY": "x"}
    done = subprocess.run([sys.executable, "-m", "builder", "--root", str(bake_root),
                           "--local", "bake", "demo", "dev", "app", "--force", "--json"],
                          capture_output=True, text=True, timeout=600, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    handed = [line for line in done.stderr.splitlines() if "credentials for Packer" in line]
    assert len(handed) >= 2, done.stderr[-3000:]
    # Asked again once the first expired, not just twice at start.
    elapsed = [float(line.split("s]", 1)[0].strip("[ ")) for line in handed]
    assert elapsed[-1] - elapsed[0] >= 10, handed
    result = json.loads(done.stdout)
    image = amis.describe(dev.client("ec2"), image_ids=[result["ami_id"]])[0]
    assert image.status == amis.AmiStatus.BAKED
    assert not list(tmp.iterdir())  # the private folder (config, socket) is gone
    record("bake: role sessions of 12 s", "expiring credentials", {},
           f"baked; Packer fetched credentials {len(handed)} times")
