"""What a bake may leave behind, read from the emulator and the machine (the
`bake_root` fixture is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builder.aws import AwsTarget
from builder.local.mode import LOCAL
from builder.project import Project

DEV = AwsTarget("111111111111", "eu-west-1")


def ec2(root: Path, target: AwsTarget = DEV) -> Any:
    return Project.open(str(root), local_mode=LOCAL).aws.env(target).client("ec2")


def leftovers(root: Path, target: AwsTarget = DEV) -> dict[str, list[str]]:
    """What a bake could leave behind: live builder instances, its key pairs and
    security groups, local build hosts and their mounts."""
    client = ec2(root, target)
    run_filter = [{"Name": "tag-key", "Values": ["builder:run-id"]}]
    instances = [i["InstanceId"] for r in client.describe_instances(Filters=[
        *run_filter, {"Name": "instance-state-name",
                      "Values": ["pending", "running", "stopping", "stopped"]}])["Reservations"]
                 for i in r["Instances"]]
    hosts = root / ".builder" / "local" / "buildhosts"
    mounts = [line for line in Path("/proc/mounts").read_text().splitlines()
              if str(hosts) in line]
    return {
        "instances": instances,
        "key_pairs": [k["KeyName"] for k in client.describe_key_pairs(Filters=run_filter)[
            "KeyPairs"]],
        "security_groups": [g["GroupId"] for g in client.describe_security_groups(
            Filters=run_filter)["SecurityGroups"]],
        "build_hosts": sorted(p.name for p in hosts.glob("*")) if hosts.is_dir() else [],
        "mounts": mounts,
    }


NOTHING_LEFT = {"instances": [], "key_pairs": [], "security_groups": [], "build_hosts": [],
                "mounts": []}
