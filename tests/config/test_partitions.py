"""Partitions (aws, aws-cn, aws-us-gov): an env's partition comes from its region; its
ARNs (config and the generated policies) are of that partition, and an ARN of another
partition is refused at its file:line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from builder.aws.partition import arn, of_arn, partition_of
from builder.cli import app
from tests.conftest import partition_repo


def _run(root: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["--root", str(root), *args], catch_exceptions=False)


@pytest.mark.parametrize(("region", "partition"), [
    ("eu-west-1", "aws"), ("us-east-1", "aws"), ("cn-north-1", "aws-cn"),
    ("cn-northwest-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov"),
    ("us-gov-east-1", "aws-us-gov")])
def test_the_partition_follows_the_region(region: str, partition: str) -> None:
    assert partition_of(region) == partition
    assert arn(region, "iam", "444444444444", "role/builder", in_region=False) == (
        f"arn:{partition}:iam::444444444444:role/builder")


def test_arns_of_every_partition_are_read() -> None:
    assert of_arn("arn:aws-cn:iam::444444444444:role/builder") == "aws-cn"
    assert of_arn("arn:aws-us-gov:kms:us-gov-west-1:555555555555:key/abc") == "aws-us-gov"
    assert of_arn("arn:aws:iam::111111111111:root") == "aws"
    assert of_arn("arn:awsx:iam::111111111111:root") is None
    assert of_arn("alias/demo") is None


def test_envs_in_china_and_govcloud_validate_with_their_arns(tmp_path: Path) -> None:
    root = partition_repo(tmp_path / "infra")
    for env, role in (("prod-cn", "arn:aws-cn:iam::444444444444:role/builder"),
                      ("prod-gov", "arn:aws-us-gov:iam::555555555555:role/builder")):
        done = _run(root, "vars", "demo", env, "app", "--json")
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["vars"]["aws_role_arn"] == role


def test_an_arn_of_another_partition_than_the_region_is_refused_at_its_line(
        tmp_path: Path) -> None:
    root = partition_repo(tmp_path / "infra")
    layer = root / "vars/demo/prod-cn/common.yml"
    layer.write_text(layer.read_text().replace("arn:aws-cn:iam::", "arn:aws:iam::"))
    done = _run(root, "vars", "demo", "prod-cn", "app")
    assert done.exit_code == 2
    assert "prod-cn/common.yml:6" in done.stderr
    assert ("aws_role_arn: is an ARN of partition aws, but region cn-north-1 is in "
            "partition aws-cn") in done.stderr


def test_policies_of_an_env_use_its_partition(tmp_path: Path) -> None:
    root = partition_repo(tmp_path / "infra")
    for env, partition in (("prod-cn", "aws-cn"), ("prod-gov", "aws-us-gov")):
        done = _run(root, "iam-policy", "demo", "--env", env)
        assert done.exit_code == 0, done.output
        [account] = json.loads(done.stdout)["accounts"]
        document = json.dumps(account["policy"])
        arns = re.findall(r'"(arn:[^"]+)"', document)
        assert arns and all(a.startswith(f"arn:{partition}:") for a in arns), arns
        assert account["trust_policy"]["Statement"][0]["Principal"]["AWS"] == (
            f"arn:{partition}:iam::{account['account']}:root")
    # prod-cn promotes by a rebake: its role may bake; prod-gov (by a copy) may not.
    rebakes = json.loads(_run(root, "iam-policy", "demo", "--env", "prod-cn",
                              "--for", "promote").stdout)["accounts"][0]["policy"]
    copies = json.loads(_run(root, "iam-policy", "demo", "--env", "prod-gov",
                             "--for", "promote").stdout)["accounts"][0]["policy"]

    def actions(policy: dict[str, Any]) -> set[str]:
        return {a for s in policy["Statement"] for a in s["Action"]}

    assert {"ec2:ImportKeyPair", "ec2:RunInstances"} <= actions(rebakes)
    assert "ec2:ImportKeyPair" not in actions(copies)


def test_validate_names_a_copy_across_partitions_at_its_promote_from(tmp_path: Path) -> None:
    root = partition_repo(tmp_path / "infra")
    done = _run(root, "validate", "demo", "--env", "prod-gov", "--offline")
    assert done.exit_code == 2, done.output
    assert "prod-gov/common.yml:7" in done.output
    assert "can't promote from staging (eu-west-1, partition aws) to prod-gov" in done.output
    rebakes = _run(root, "validate", "demo", "--env", "prod-cn", "--offline")
    assert "partition" not in rebakes.output, rebakes.output
