"""`builder iam-policy`: the policies cover the calls table, read as IAM grammar, and
are scoped to the names the config resolves to."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import botocore.session
import hcl2
import pytest

from builder.aws import calls
from builder.cli import app
from tests.conftest import copy_demo

# IAM actions that are no SDK operation of their own (authorised inside another call).
_IAM_ONLY = {"kms:ReEncryptFrom", "kms:ReEncryptTo", "iam:PassRole", "s3:ListBucket",
             "codedeploy:GetDeploymentConfig", "codedeploy:RegisterApplicationRevision",
             "codedeploy:GetApplicationRevision"}
_ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")
_ARN = re.compile(r"^arn:aws:[a-z0-9-]+:([a-z]{2}-[a-z]+-\d)?:(\d{12})?:\S+$")
_CONDITIONS = {"StringEquals", "StringLike", "ArnLike", "Bool", "Null",
               "ForAnyValue:StringEquals"}


def _policies(*args: str, root: Path) -> dict[str, Any]:
    from typer.testing import CliRunner

    done = CliRunner().invoke(app, ["--root", str(root), "iam-policy", *args],
                              catch_exceptions=False)
    assert done.exit_code == 0, done.output
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _check_grammar(document: dict[str, Any], *, trust: bool = False) -> None:
    assert set(document) == {"Version", "Statement"} and document["Version"] == "2012-10-17"
    sids = [statement["Sid"] for statement in document["Statement"]]
    assert len(sids) == len(set(sids)) and all(re.fullmatch(r"[A-Za-z0-9]+", s) for s in sids)
    for statement in document["Statement"]:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Principal",
                                  "Condition"}
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        for action in [actions] if isinstance(actions, str) else actions:
            assert _ACTION.match(action), action
        if trust:
            assert "Resource" not in statement and "Principal" in statement
            continue
        resources = statement["Resource"]
        for resource in [resources] if isinstance(resources, str) else resources:
            assert resource == "*" or _ARN.match(resource), resource
        for test, variables in statement.get("Condition", {}).items():
            assert test in _CONDITIONS, test
            assert all(isinstance(v, list) and v for v in variables.values())


def _real_operations() -> set[str]:
    session = botocore.session.get_session()
    names = set()
    for service in ("ec2", "autoscaling", "codedeploy", "dynamodb", "kms", "ssm", "s3",
                    "sts", "iam"):
        model = session.get_service_model(service)
        names |= {f"{service}:{operation}" for operation in model.operation_names}
    return names


def test_every_action_in_the_table_is_a_real_one() -> None:
    real = _real_operations() | _IAM_ONLY
    unknown = sorted({call.action for rows in calls.STEPS.values() for call in rows} - real)
    assert unknown == []


def test_the_demo_policies_cover_every_row_of_the_table(tmp_path: Path) -> None:
    policies = _policies("demo", root=copy_demo(tmp_path / "infra"))
    granted = {action for account in policies["accounts"]
               for statement in account["policy"]["Statement"]
               for action in statement["Action"]}
    # The demo sets no iam_instance_profile, ami_users, vault or AMI parameter nor
    # deprecation: their rows are left out, every other row is in.
    unset = {"iam_instance_profile", "ami_users", "vault_password_ssm_parameter",
             "ami_ssm_parameter", "ami_deprecate_after_days"}
    wanted = {call.action for step in calls.POLICY_STEPS for call in calls.calls_of(step)
              if call.when not in unset}
    assert wanted - granted == set()
    assert {"iam:PassRole", "iam:GetInstanceProfile", "ssm:GetParameter"} & granted == set()
    for account in policies["accounts"]:
        _check_grammar(account["policy"])
        _check_grammar(account["trust_policy"], trust=True)
        # And as AWS's own grammar, as moto's validators read it (the local extra).
        validation = pytest.importorskip("moto.iam.policy_validation")
        validation.IAMPolicyDocumentValidator(json.dumps(account["policy"])).validate()
        validation.IAMTrustPolicyDocumentValidator(
            json.dumps(account["trust_policy"])).validate()
        assert set(account["reasons"]) == {a for s in account["policy"]["Statement"]
                                           for a in s["Action"]}
    _check_grammar(policies["ci_policy"])


def test_policies_are_scoped_to_what_the_config_resolves_to(tmp_path: Path) -> None:
    root = copy_demo(tmp_path / "infra")
    (root / "vars/demo/staging/app.yml").write_text(
        "iam_instance_profile: demo-builder\nvault_password_ssm_parameter: /demo/vault\n")
    policies = _policies("demo", "--env", "staging", "--for", "bake", "--for", "release",
                         "--ci-principal", "arn:aws:iam::999999999999:role/ci", root=root)
    [account] = policies["accounts"]
    assert account["account"] == "222222222222"
    assert account["trust_policy"]["Statement"][0]["Principal"] == {
        "AWS": "arn:aws:iam::999999999999:role/ci"}
    assert policies["ci_policy"]["Statement"][0]["Resource"] == [
        "arn:aws:iam::222222222222:role/builder"]

    def grants(action: str) -> list[dict[str, Any]]:
        return [s for s in account["policy"]["Statement"] if action in s["Action"]]

    [group] = grants("codedeploy:CreateDeployment")
    assert group["Resource"] == [
        "arn:aws:codedeploy:eu-west-1:222222222222:deploymentgroup:demo/demo-staging-app",
        "arn:aws:codedeploy:eu-west-1:222222222222:deploymentgroup:demo/demo-staging-worker"]
    [lock] = grants("dynamodb:PutItem")
    assert lock["Resource"] == ["arn:aws:dynamodb:eu-west-1:222222222222:table/builder-locks"]
    terminate = grants("ec2:TerminateInstances")
    assert terminate and all(s["Condition"] == {"Null": {"aws:ResourceTag/builder:run-id":
                                                         ["false"]}} for s in terminate)
    [pass_role] = grants("iam:PassRole")
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService":
                                                       ["ec2.amazonaws.com"]}}
    [profile] = grants("iam:GetInstanceProfile")
    assert profile["Resource"] == ["arn:aws:iam::222222222222:instance-profile/demo-builder"]
    [parameter] = grants("ssm:GetParameter")
    assert parameter["Resource"] == ["arn:aws:ssm:eu-west-1:222222222222:parameter/demo/vault"]
    aws_grants = [s for s in grants("kms:CreateGrant") if "Bool" in s.get("Condition", {})]
    assert aws_grants and all(s["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": ["true"]}
                              and s["Condition"]["ForAnyValue:StringEquals"] == {
                                  "kms:ResourceAliases": ["alias/demo-staging-ami"]}
                              for s in aws_grants)
    assert "codedeploy:GetDeployment" in account["reasons"]


def test_promotion_needs_the_source_key_policy_and_sharing_only_in_the_source(
        tmp_path: Path) -> None:
    policies = _policies("demo", "--for", "promote", root=copy_demo(tmp_path / "infra"))
    by_account = {a["account"]: a for a in policies["accounts"]}
    staging, prod, dev = (by_account[n] for n in ("222222222222", "333333333333",
                                                  "111111111111"))

    def actions(account: dict[str, Any]) -> set[str]:
        return {a for s in account["policy"]["Statement"] for a in s["Action"]}

    assert "ec2:ModifySnapshotAttribute" in actions(staging)
    assert "ec2:CopyImage" in actions(prod) and "ec2:CopyImage" not in actions(staging)
    assert actions(dev) == set()  # nobody promotes from or to dev
    [statement] = staging["kms_key_policy_statements"]
    assert statement["Principal"] == {"AWS": "arn:aws:iam::333333333333:role/builder"}
    assert "kms:Decrypt" in statement["Action"]
    source_key = [s for s in prod["policy"]["Statement"]
                  if s.get("Condition", {}).get("ForAnyValue:StringEquals") == {
                      "kms:ResourceAliases": ["alias/demo-staging-ami"]}]
    assert source_key and source_key[0]["Resource"] == [
        "arn:aws:kms:eu-west-1:222222222222:key/*"]


def test_terraform_format_is_hcl_with_one_data_source_per_document(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    root = copy_demo(tmp_path / "infra")
    done = CliRunner().invoke(app, ["--root", str(root), "iam-policy", "demo", "--format",
                                    "terraform"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    parsed = hcl2.loads(done.stdout)
    names = [name.strip('"') for block in parsed["data"]
             for kind in block.values() for name in kind]
    assert "builder_ci" in names
    for account in ("111111111111", "222222222222", "333333333333"):
        assert f"builder_{account}_builder" in names
        assert f"builder_{account}_builder_trust" in names
    assert "builder_222222222222_builder_kms_key_policy" in names
    json_actions = {a for account in _policies("demo", root=root)["accounts"]
                    for s in account["policy"]["Statement"] for a in s["Action"]}
    for action in json_actions:
        assert json.dumps(action) in done.stdout


@pytest.mark.parametrize("args", [["--for", "deploy"], ["--format", "yaml"]])
def test_bad_choices_exit_2(tmp_path: Path, args: list[str]) -> None:
    from typer.testing import CliRunner

    done = CliRunner().invoke(app, ["--root", str(copy_demo(tmp_path / "infra")),
                                    "iam-policy", "demo", *args])
    assert done.exit_code == 2 and "builder:" in done.stderr


def test_a_multi_region_env_is_granted_in_each_region_with_its_key(tmp_path: Path) -> None:
    from tests.release.emulated import KEYS, REGIONS, make_multi_region

    root = copy_demo(tmp_path / "infra")
    make_multi_region(root)
    [prod] = _policies("demo", "--env", "prod", root=root)["accounts"]
    statements = [s for policy in prod.values() if isinstance(policy, dict)
                  for s in policy.get("Statement", [])]
    text = json.dumps(statements)
    for region in REGIONS:
        assert f"arn:aws:ec2:{region}::image/*" in text, region
        assert f'"kms:ResourceAliases": ["{KEYS[region]}"]' in text, region
    copy = [s for s in statements if "ec2:CopyImage" in s["Action"]]
    assert copy, "the bake's region copies"
