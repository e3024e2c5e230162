"""`bake --keep-on-failure` for real: a failing task keeps the build host (instance, key
pair, security group, local build host) tagged with its run and time, prints the ssh
command that reaches it (and it does), leaves no `building` AMI; `reap` leaves it while
its time runs and `reap --run-id` removes all of it."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.aws import images
from builder.config.models import Combo
from tests.bake.leftovers import NOTHING_LEFT, ec2, leftovers
from tests.bake.test_interrupts import wait_for
from tests.conftest import run_builder

pytestmark = [pytest.mark.slow, pytest.mark.local]

_SSH = re.compile(r"kept for debugging until (\S+): (ssh .*?) \(`builder reap --run-id "
                  r"([0-9a-f]{12})`")


def _tags(resource: dict[str, object]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}  # type: ignore[attr-defined]


def test_a_failing_task_keeps_the_host_until_reap(bake_root: Path) -> None:
    playbook = bake_root / "playbooks/demo/packer-worker.yml"
    original = playbook.read_text()
    playbook.write_text(original + "  tasks:\n    - name: Break on purpose\n"
                        "      ansible.builtin.command: /bin/false\n")
    combo = Combo("demo", "dev", "worker")
    client = ec2(bake_root)
    before = {i.id for i in images.images_of(client, combo)}
    started = time.monotonic()
    try:
        done = run_builder("--local", "bake", "demo", "dev", "worker", "--force",
                           "--keep-on-failure", "--keep-hours", "2", root=bake_root)
    finally:
        playbook.write_text(original)
    print(f"failed bake with the host kept: {time.monotonic() - started:.1f}s")
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "Break on purpose" in last
    found = _SSH.search(last)
    assert found, last
    until, command, run_id = found.groups()

    # Reachable with exactly the printed command (host-key checks aside: a fresh host).
    argv = shlex.split(command)
    assert argv[:2] == ["ssh", "-i"] and argv[-1] == "ubuntu@127.0.0.1"
    key_file = Path(argv[2])
    reached = subprocess.run(
        [*argv[:-1], "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", argv[-1], "true"],
        capture_output=True, text=True, timeout=60, check=False)
    assert reached.returncode == 0, reached.stderr

    # The key: 0600 in a 0700 folder, its text nowhere but there.
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.parent.stat().st_mode & 0o777 == 0o700
    secret = key_file.read_text()
    assert "PRIVATE KEY" in secret
    artifacts = bake_root / ".builder" / "builds" / "demo" / "dev" / "worker"
    for path in [p for p in artifacts.rglob("*") if p.is_file()]:
        assert secret not in path.read_text(errors="replace"), path
    assert secret not in done.stdout + done.stderr

    # Kept and tagged: instance, key pair, security group, build host; no AMI of the run.
    left = leftovers(bake_root)
    assert len(left["instances"]) == len(left["key_pairs"]) == 1
    assert len(left["security_groups"]) == len(left["build_hosts"]) == 1
    [instance] = [i for r in client.describe_instances(InstanceIds=left["instances"])[
        "Reservations"] for i in r["Instances"]]
    kept_tags = {"builder:kept-for-debug": run_id, "builder:kept-until": until}
    assert kept_tags.items() <= _tags(instance).items()
    assert instance["State"]["Name"] == "running"
    [key_pair] = client.describe_key_pairs(KeyNames=left["key_pairs"])["KeyPairs"]
    [group] = client.describe_security_groups(GroupIds=left["security_groups"])[
        "SecurityGroups"]
    assert kept_tags.items() <= _tags(key_pair).items()  # type: ignore[arg-type]
    assert kept_tags.items() <= _tags(group).items()  # type: ignore[arg-type]
    assert {i.id for i in images.images_of(client, combo)} == before
    assert not [i for i in images.describe(client, owners=["self"])
                if i.tags.get(images.TAG_RUN_ID) == run_id]

    # Its bake is gone, yet reap leaves it (listing it) while its time runs.
    listed = run_builder("--local", "reap", "--dry-run", "--json", root=bake_root)
    assert listed.returncode == 0, listed.stderr
    kept = json.loads(listed.stdout)["kept"]
    assert [h["run_id"] for h in kept["hosts"]] == [run_id]
    assert instance["InstanceId"] in {r["id"] for r in kept["resources"]}
    assert run_builder("--local", "reap", root=bake_root).returncode == 0
    assert leftovers(bake_root) == left

    removed = run_builder("--local", "reap", "--run-id", run_id, root=bake_root)
    assert removed.returncode == 0, removed.stderr
    assert leftovers(bake_root) == NOTHING_LEFT
    assert not key_file.parent.exists()


def test_an_interrupt_keeps_nothing(bake_root: Path) -> None:
    """Packer aborts without cleaning up under --keep-on-failure: an interrupt is no
    failed task, so builder terminates the instance Packer left."""
    child = subprocess.Popen(
        [sys.executable, "-m", "builder", "--root", str(bake_root), "--local", "bake", "demo",
         "dev", "app", "--force", "--keep-on-failure"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    wait_for(child, r"packer-app\.yml: task 4/")
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=300)
    assert child.returncode == 130, stderr[-2000:]
    assert "kept for debugging" not in stderr
    assert leftovers(bake_root) == NOTHING_LEFT
    assert not list((bake_root / ".builder" / "kept").glob("*"))
