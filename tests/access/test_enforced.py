"""Local mode with IAM enforced: each env's role holds exactly the policy `builder
iam-policy` writes, and release (success and rollback), promote, prune, reap, status and
rebuild's plan work under it; taking one action out makes the command that needs it
fail with exit 1, naming the permission and the builder step.

What the emulator enforces is the action of every call (builder.local.emulator.iam says
what it does not: resource scopes and conditions, which tests/access/test_iam_policy.py
checks in the documents).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from builder.aws import images
from builder.config.models import Combo
from builder.local import control, stack
from builder.local import iam as local_iam
from builder.local.mode import LOCAL
from builder.pipelines.access import doctor
from builder.project import Project
from tests.conftest import copy_demo
from tests.pipelines.conftest import bake_like, ec2_of

pytestmark = pytest.mark.local

DEV_APP = Combo("demo", "dev", "app")
STAGING_APP = Combo("demo", "staging", "app")
STAGING_WORKER = Combo("demo", "staging", "worker")


@pytest.fixture(scope="module")
def enforced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = copy_demo(tmp_path_factory.mktemp("enforced") / "infra")
    project = Project.open(str(root), local_mode=LOCAL)
    up = stack.up(project, build_host=False, deploy_step_seconds=0.2, enforce_iam=True)
    assert up.enforcement is not None
    assert set(up.enforcement.roles) == {f"arn:aws:iam::{n}:role/builder"
                                         for n in ("111111111111", "222222222222",
                                                   "333333333333")}
    try:
        yield project
    finally:
        stack.down(project.layout)


def _run(cli: Any, project: Project, *args: str) -> Any:
    return cli("--local", *args, root=project.root)


def test_enforcement_is_on_and_refuses_what_no_policy_allows(enforced: Project) -> None:
    assert control.call(str(enforced.aws.local_endpoint), "iam")["enforced"] is True
    # A plain client with the role's credentials: this test's call is judged as builder's.
    credentials = enforced.env_aws(enforced.resolve("demo", "dev", "app")).credentials_env()
    ec2 = boto3.client("ec2", endpoint_url=enforced.aws.local_endpoint,
                       region_name=credentials["AWS_REGION"],
                       aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
                       aws_session_token=credentials["AWS_SESSION_TOKEN"])
    assert ec2.describe_images(Owners=["self"])["Images"] is not None
    with pytest.raises(ClientError, match="not authorized to perform: ec2:CreateVpc"):
        ec2.create_vpc(CidrBlock="10.9.0.0/16")


def test_release_and_its_rollback_under_the_generated_policy(enforced: Project,
                                                            cli: Any) -> None:
    first = bake_like(enforced, DEV_APP)
    done = _run(cli, enforced, "release", "demo", "dev", "app", "--ami", first.id, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["outcome"] == "verified"
    assert "release record not kept" not in done.stderr  # records_bucket's PutObject allowed

    second = bake_like(enforced, DEV_APP)
    stack.fail_next_deployment(enforced, "demo", "dev", "app")
    failed = _run(cli, enforced, "release", "demo", "dev", "app", "--ami", second.id)
    assert failed.exit_code == 1, failed.output
    assert "Rolled back" in failed.stderr and "AccessDenied" not in failed.stderr
    tags = images.describe(ec2_of(enforced, DEV_APP), image_ids=[second.id])[0].tags
    assert tags[images.TAG_STATUS] == images.AmiStatus.FAILED


def test_promote_under_the_generated_policy(enforced: Project, cli: Any) -> None:
    source = bake_like(enforced, STAGING_APP)
    released = _run(cli, enforced, "release", "demo", "staging", "app", "--ami", source.id)
    assert released.exit_code == 0, released.output
    done = _run(cli, enforced, "promote", "demo", "app", "--to", "prod", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["release"]["outcome"] == "verified"


def test_prune_reap_status_and_the_rebuild_plan_under_the_generated_policy(
        enforced: Project, cli: Any) -> None:
    for _ in range(3):
        bake_like(enforced, STAGING_WORKER)
    pruned = _run(cli, enforced, "prune", "demo", "staging", "worker", "--keep", "1",
                  "--yes", "--json")
    assert pruned.exit_code == 0, pruned.output
    assert [e for e in json.loads(pruned.stdout)["amis"] if e["action"] == "deleted"]
    for args in (("reap", "--older-than", "1m"), ("status", "demo"),
                 ("rebuild", "demo", "--dry-run")):
        done = _run(cli, enforced, *args)
        assert done.exit_code == 0, f"{args}: {done.output}"


@pytest.mark.parametrize(("action", "args", "doing"), [
    ("ec2:CreateLaunchTemplateVersion", ("release", "demo", "dev", "worker"), "release"),
    ("codedeploy:CreateDeployment", ("release", "demo", "dev", "worker"), "release"),
    ("dynamodb:PutItem", ("release", "demo", "dev", "worker"), "release"),
    ("ec2:DeregisterImage", ("prune", "demo", "dev", "worker", "--keep", "1", "--yes"),
     "prune"),
])
def test_a_missing_permission_fails_naming_it_and_the_step(
        enforced: Project, cli: Any, action: str, args: tuple[str, ...], doing: str) -> None:
    worker = Combo("demo", "dev", "worker")
    ami = bake_like(enforced, worker)
    bake_like(enforced, worker)
    local_iam.enforce(enforced, without={action})
    try:
        failed = _run(cli, enforced, *args[:4], *(("--ami", ami.id) if doing == "release"
                                                  else args[4:]))
    finally:
        local_iam.enforce(enforced)
    assert failed.exit_code == 1, failed.output
    said = failed.stdout + failed.stderr  # prune reports a failed AMI in its table
    assert f"not authorized to perform: {action}" in said
    assert f"builder step {doing} needs" in said
    assert "builder iam-policy" in said


def test_doctor_passes_with_the_generated_policies_in_three_calls_per_account(
        enforced: Project, cli: Any) -> None:
    fresh = Project.open(str(enforced.root), local_mode=LOCAL)
    report = doctor(fresh)
    assert report.ok, report.to_text()
    assert [tuple(c.outcome for c in a.checks) for a in report.accounts] == [
        ("ok", "ok", "ok")] * 3
    assert fresh.aws.call_log.counts == {"sts.AssumeRole": 3, "sts.GetCallerIdentity": 3,
                                         "iam.SimulatePrincipalPolicy": 3}
    done = _run(cli, enforced, "doctor", "demo", "--env", "prod")
    assert done.exit_code == 0, done.output
    assert "333333333333" in done.stdout and "all checks passed" in done.stdout


def test_doctor_names_a_missing_permission_and_the_statement_to_add(
        enforced: Project, cli: Any) -> None:
    local_iam.enforce(enforced, without={"ec2:CreateLaunchTemplateVersion"})
    try:
        done = _run(cli, enforced, "doctor", "demo", "--json")
    finally:
        local_iam.enforce(enforced)
    assert done.exit_code == 2, done.output
    accounts = json.loads(done.stdout)["accounts"]
    assert all(a["missing_actions"] == ["ec2:CreateLaunchTemplateVersion"] for a in accounts)
    [statement] = accounts[0]["statements_to_add"]
    assert statement["Action"] == ["ec2:CreateLaunchTemplateVersion"]
    assert statement["Resource"] == ["arn:aws:ec2:eu-west-1:111111111111:launch-template/*"]


def test_doctor_refuses_a_role_of_another_account(enforced: Project, cli: Any) -> None:
    """The env's role lives in another account than aws_account_id: refused from the
    config, before any call is made."""
    done = _run(cli, enforced, "-e", "aws_account_id=444444444444", "doctor", "demo",
                "--env", "dev")
    assert done.exit_code == 2, done.output
    assert "is a role of account 111111111111, but aws_account_id is 444444444444" in \
        done.output
