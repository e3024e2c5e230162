"""Bakes end to end in local mode: real Packer, real ansible-runner, the real build host."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builder.aws import AwsTarget
from builder.project import Project
from tests.conftest import copy_demo

DEV = AwsTarget("111111111111", "eu-west-1")


@pytest.fixture(scope="module")
def bake_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A demo repo (a git checkout, so bakes tag the commit) with a running local stack
    and build host image, one per test module."""
    if os.geteuid() != 0:
        pytest.fail("bake tests need root (the local build host mounts and chroots)")
    from builder.local import stack

    root = copy_demo(tmp_path_factory.mktemp("bake") / "infra")
    for argv in (["init", "-q"], ["add", "-A"],
                 ["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "demo"]):
        subprocess.run(["git", "-C", str(root), *argv], check=True)
    project = Project.open(str(root), local=True)
    stack.up(project, build_host=True, deploy_step_seconds=0.2)
    try:
        yield root
    finally:
        stack.down(project.layout)


def ec2(root: Path, target: AwsTarget = DEV) -> Any:
    return Project.open(str(root), local=True).aws.env(target).client("ec2")


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
