"""What a faulted run may leave, read from the emulator and this machine as a difference
from before the run; the CLI run with a fault injected at a progress step; the table row.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.aws import EnvAws
from builder.aws import images as amis
from builder.aws import locks as lock_items
from builder.output import SIGNAL_AT_ENV

TABLE_ENV = "BUILDER_FAULTS_TABLE"
_LIVE = ["pending", "running", "stopping", "stopped"]


@dataclass(frozen=True)
class Seen:
    """The ids of everything a run could leave, at one moment."""

    kinds: dict[str, frozenset[str]]

    def new_since(self, before: Seen) -> dict[str, list[str]]:
        return {kind: sorted(ids - before.kinds.get(kind, frozenset()))
                for kind, ids in self.kinds.items()}


def seen(env: EnvAws, root: Path, tmp: Path, *,
         shares_of: tuple[EnvAws, amis.Image] | None = None) -> Seen:
    """Live builder instances, key pairs, security groups, AMIs that are not complete
    (building, untagged: Packer's temporary ones), snapshots no AMI holds, lock items,
    build hosts and their mounts, builder's temp folders in `tmp`, and the launch and
    create-volume permissions and KMS grants on an image of another env."""
    ec2 = env.client("ec2")
    run = [{"Name": "tag-key", "Values": [amis.TAG_RUN_ID]}]
    own = amis.describe(ec2, owners=["self"])
    held = {s for i in own for s in i.snapshot_ids}
    snapshots = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    hosts = root / ".builder" / "local" / "buildhosts"
    kinds: dict[str, set[str]] = {
        "instances": {i["InstanceId"] for r in ec2.describe_instances(Filters=[
            *run, {"Name": "instance-state-name", "Values": _LIVE}])["Reservations"]
            for i in r["Instances"]},
        "key_pairs": {k["KeyName"] for k in ec2.describe_key_pairs(Filters=run)["KeyPairs"]},
        "security_groups": {g["GroupId"] for g in ec2.describe_security_groups(
            Filters=run)["SecurityGroups"]},
        "incomplete_amis": {i.id for i in own if i.status not in (*amis.USABLE_STATUSES,
                                                                   amis.AmiStatus.FAILED)},
        "loose_snapshots": snapshots - held,
        "locks": _locks(env),
        "build_hosts": {p.name for p in hosts.glob("*")} if hosts.is_dir() else set(),
        "mounts": {line for line in Path("/proc/mounts").read_text().splitlines()
                   if str(hosts) in line},
        "temp_folders": {p.name for p in tmp.glob("builder-*")},
    }
    if shares_of is not None:
        kinds["shares"] = set(shares(*shares_of))
    return Seen({k: frozenset(v) for k, v in kinds.items()})


def _locks(env: EnvAws) -> set[str]:
    dynamodb = env.client("dynamodb")
    if lock_items.TABLE not in dynamodb.list_tables()["TableNames"]:
        return set()
    items = dynamodb.scan(TableName=lock_items.TABLE, ConsistentRead=True)["Items"]
    return {i[lock_items.KEY]["S"] for i in items if int(i["expires_at"]["N"]) > time.time()}


def shares(env: EnvAws, image: amis.Image) -> list[str]:
    """Every permission and grant that lets another account use `image`, and the record
    of a promotion's share on it."""
    ec2 = env.client("ec2")
    image = amis.describe(ec2, image_ids=[image.id])[0]
    found = [f"launch:{p}" for p in ec2.describe_image_attribute(
        ImageId=image.id, Attribute="launchPermission")["LaunchPermissions"]]
    for snapshot in ec2.describe_snapshots(SnapshotIds=list(image.snapshot_ids))["Snapshots"]:
        found += [f"volume:{snapshot['SnapshotId']}:{p}" for p in ec2.describe_snapshot_attribute(
            SnapshotId=snapshot["SnapshotId"],
            Attribute="createVolumePermission")["CreateVolumePermissions"]]
        if snapshot.get("KmsKeyId"):
            kms = env.client("kms")
            found += [f"grant:{g['GrantId']}" for g in kms.list_grants(
                KeyId=snapshot["KmsKeyId"])["Grants"] if g.get("Name", "").startswith(
                    "builder-promote-")]
    found += [f"tag:{k}" for k in image.tags if k.startswith("builder:sharing:")]
    return found


def count(left: dict[str, list[str]]) -> int:
    return sum(len(ids) for ids in left.values())


def builder_env(tmp: Path, signal_at: str | None = None) -> dict[str, str]:
    """The environment of a CLI run: its own TMPDIR (so its temp folders can be checked),
    and the fault to inject."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    env.pop(SIGNAL_AT_ENV, None)
    if signal_at is not None:
        env[SIGNAL_AT_ENV] = signal_at
    return env


def run(root: Path, tmp: Path, *args: str, signal_at: str | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`builder --local ARGS` as its own process, `signal_at` injected (`SIGINT@regex`)."""
    return subprocess.run([sys.executable, "-m", "builder", "--root", str(root), "--local",
                           *args], capture_output=True, text=True, timeout=timeout,
                          env=builder_env(tmp, signal_at), check=False)


def start(root: Path, tmp: Path, *args: str, signal_at: str | None = None
          ) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "builder", "--root", str(root), "--local",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=builder_env(tmp, signal_at))


def read_until(child: subprocess.Popen[str], pattern: str) -> list[str]:
    """Progress lines up to the first matching `pattern` (a progress event, no sleeps)."""
    assert child.stderr is not None
    lines: list[str] = []
    for line in child.stderr:
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"the run ended before {pattern!r}:\n{''.join(lines[-20:])}")


def record(case: str, faults: str, left: dict[str, list[str]], rerun: str) -> None:
    """One row of the table tests/faults/table.py prints."""
    with Path(os.environ[TABLE_ENV]).open("a", encoding="utf-8") as out:
        out.write(json.dumps({"case": case, "faults": faults, "leftovers": count(left),
                              "rerun": rerun}) + "\n")


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def tagged(env: EnvAws, ami_id: str) -> dict[str, Any]:
    return dict(amis.describe(env.client("ec2"), image_ids=[ami_id])[0].tags)
