"""`reap` and build hosts kept for debugging (`bake --keep-on-failure`), against the
emulator: a kept host whose time has passed goes, one whose time has not stays (even
with its owner gone) and is listed, `--run-id` removes it at once; its key file goes
with it."""

from __future__ import annotations

import socket
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from builder.aws import images, temporary
from builder.bake import keep
from builder.pipelines.reap import reap
from builder.project import Project
from tests.conftest import run_builder

pytestmark = pytest.mark.local


def _gone_owner() -> str:
    """An owner tag naming a process of this host that has ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return f"{socket.gethostname()}/{child.pid}"


def _kept_host(project: Project, tmp_path: Path, until: datetime) -> dict[str, Any]:
    """What a failed bake with --keep-on-failure leaves: an instance, key pair and
    security group tagged with its run and kept-until, and its key file."""
    resolved = project.resolve("demo", "dev", "app")
    ec2 = project.env_aws(resolved).client("ec2")
    run_id = uuid.uuid4().hex[:12]
    tags = {images.TAG_RUN_ID: run_id, images.TAG_OWNER: _gone_owner(),
            temporary.TAG_STARTED_AT: datetime.now(UTC).isoformat(timespec="seconds")}
    key = tmp_path / f"{run_id}.key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    key_id = temporary.import_key_pair(ec2, f"builder-{run_id}",
                                       key.with_suffix(".key.pub").read_text(), tags)
    group = temporary.create_security_group(ec2, f"builder-{run_id}",
                                            temporary.vpc_for_build(ec2, {}), ["10.0.0.0/8"],
                                            tags)
    base = images.resolve_source(ec2, resolved.settings)
    instance = ec2.run_instances(ImageId=base.id, MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
    ])["Instances"][0]["InstanceId"]
    iso = until.isoformat(timespec="seconds")
    temporary.mark_kept(ec2, [instance, key_id, group], run_id, iso)
    record = keep.save(project.layout.state_dir, run_id=run_id, combo="demo/dev/app",
                       account=resolved.settings.aws_account_id,
                       region=resolved.settings.aws_region, until=iso, private_key=key,
                       user="ubuntu", host="203.0.113.7", port=22)
    return {"run_id": run_id, "instance": instance, "group": group,
            "key_pair": f"builder-{run_id}", "folder": record.folder}


def _alive(project: Project, host: dict[str, Any]) -> dict[str, bool]:
    ec2 = project.env_aws(project.resolve("demo", "dev", "app")).client("ec2")
    reply = ec2.describe_instances(InstanceIds=[host["instance"]])
    state = reply["Reservations"][0]["Instances"][0]["State"]["Name"]
    groups = ec2.describe_security_groups(Filters=[
        {"Name": "group-id", "Values": [host["group"]]}])["SecurityGroups"]
    keys = ec2.describe_key_pairs(Filters=[
        {"Name": "key-name", "Values": [host["key_pair"]]}])["KeyPairs"]
    return {"instance": state == "running", "security_group": bool(groups),
            "key_pair": bool(keys), "key_file": host["folder"].exists()}


KEPT = {"instance": True, "security_group": True, "key_pair": True, "key_file": True}
GONE = {"instance": False, "security_group": False, "key_pair": False, "key_file": False}


def test_reap_removes_an_expired_kept_host_and_keeps_one_in_its_time(
        local_stack: Project, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    expired = _kept_host(local_stack, tmp_path, now - timedelta(minutes=1))
    current = _kept_host(local_stack, tmp_path, now + timedelta(hours=24))
    folder = current["folder"]
    assert folder.stat().st_mode & 0o777 == 0o700
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == {
        "id_ed25519": 0o600, "kept.json": 0o600}

    listed = reap(local_stack, dry_run=True)
    assert expired["instance"] in str(listed.by_kind()["instances"])
    assert current["instance"] not in str(listed.by_kind()["instances"])
    assert {k.id for k in listed.kept_resources if k.run_id == current["run_id"]} == {
        current["instance"], current["group"], current["key_pair"]}
    assert [k.run_id for k in listed.kept_hosts] == [current["run_id"]]
    assert _alive(local_stack, expired) == KEPT  # only listed

    done = reap(local_stack)
    assert _alive(local_stack, expired) == GONE
    # Its owner is gone, yet it stays: it was kept on purpose, and its time is not up.
    assert _alive(local_stack, current) == KEPT
    assert expired["folder"] in done.kept_key_files
    assert "kept for debugging" in done.to_text()

    shown = run_builder("--local", "reap", "--dry-run", "--json", root=local_stack.root)
    assert shown.returncode == 0, shown.stderr
    assert current["run_id"] in shown.stdout and current["instance"] in shown.stdout

    released = reap(local_stack, release_run=current["run_id"])
    assert _alive(local_stack, current) == GONE
    assert not released.release_run_unknown
    assert reap(local_stack, release_run=current["run_id"]).release_run_unknown

