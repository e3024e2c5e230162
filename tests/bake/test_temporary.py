"""A bake's own security group, against the emulator: who may reach SSH, and nothing
left behind when the group can't be completed."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from builder.aws import temporary
from builder.aws.images import TAG_RUN_ID
from builder.errors import AwsError
from builder.project import Project

pytestmark = pytest.mark.local


@pytest.fixture
def ec2(local_stack: Project) -> Any:
    return local_stack.env_aws(local_stack.resolve("demo", "dev", "app")).client("ec2")


def _groups_named(ec2: Any, name: str) -> list[dict[str, Any]]:
    found = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])
    return list(found["SecurityGroups"])


def test_ssh_is_open_to_ipv4_and_ipv6_blocks(ec2: Any) -> None:
    name = f"builder-{uuid.uuid4().hex[:12]}"
    group_id = temporary.create_security_group(
        ec2, name, temporary.vpc_for_build(ec2, {}), ["10.0.0.0/8", "2001:db8::/32"],
        {TAG_RUN_ID: name})
    try:
        [rule] = _groups_named(ec2, name)[0]["IpPermissions"]
        assert (rule["FromPort"], rule["ToPort"]) == (22, 22)
        assert [r["CidrIp"] for r in rule["IpRanges"]] == ["10.0.0.0/8"]
        assert [r["CidrIpv6"] for r in rule["Ipv6Ranges"]] == ["2001:db8::/32"]
    finally:
        temporary.delete_security_group(ec2, group_id)
    assert _groups_named(ec2, name) == []


def test_a_group_whose_ssh_rule_fails_is_not_left_behind(ec2: Any) -> None:
    name = f"builder-{uuid.uuid4().hex[:12]}"
    over_the_limit = [f"10.0.{i}.0/24" for i in range(61)]  # a group holds 60 rules
    with pytest.raises(AwsError, match="RulesPerSecurityGroupLimitExceeded"):
        temporary.create_security_group(ec2, name, temporary.vpc_for_build(ec2, {}),
                                        over_the_limit, {TAG_RUN_ID: name})
    assert _groups_named(ec2, name) == []
