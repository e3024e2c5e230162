"""The calls table is the truth: a call a step makes that the table does not list for
it fails (in tests), and so does a CLI command's call made outside every step."""

from __future__ import annotations

import pytest

from builder.aws.calls import RUNNING, UnlistedCall, actions_of, calls_of, expand
from builder.project import Project

pytestmark = pytest.mark.local


def test_steps_include_what_they_run() -> None:
    assert expand("rebuild") == ("rebuild", "bake", "packer", "release", "promote", "status")
    assert "codedeploy:CreateDeployment" in actions_of("promote")  # its release
    assert all(call.why for step in ("bake", "release", "promote", "prune", "reap")
               for call in calls_of(step))


def test_an_unlisted_call_fails_naming_the_action_and_the_step(local_stack: Project) -> None:
    ec2 = local_stack.env_aws(local_stack.resolve("demo", "dev", "app")).client("ec2")
    before = len(RUNNING.unlisted)
    try:
        with RUNNING.step("status"):
            ec2.describe_images(Owners=["self"])  # listed for status
            with pytest.raises(UnlistedCall, match=r"^ec2:DescribeVpcs is not in the calls "
                                                   r"table for step status"):
                ec2.describe_vpcs()
            with RUNNING.aside():  # someone else's call while builder runs
                ec2.describe_vpcs()
        ec2.describe_vpcs()  # a test's own call, outside every step
        with RUNNING.strict(), pytest.raises(UnlistedCall, match="outside every builder step"):
            ec2.describe_vpcs()
        assert len(RUNNING.unlisted) == before + 2
    finally:
        del RUNNING.unlisted[before:]  # raised on purpose: not this suite's failure
