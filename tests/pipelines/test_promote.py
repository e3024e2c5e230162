"""Promotion staging → prod: another account (222… → 333…) and region (eu-west-1 →
eu-central-1), re-encrypted with prod's KMS key, released there; refusals and the
preflight; nothing left shared or half-copied."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from builder.aws import EnvAws, fleet
from builder.aws import images as amis
from builder.aws.calls import RUNNING
from builder.aws.sharing import preflight
from builder.config.models import Combo
from builder.errors import PromotionFailed
from builder.local.mode import LOCAL
from builder.pipelines.promote import promote
from builder.project import Project
from builder.release.release import release
from tests.pipelines.conftest import bake_like

pytestmark = pytest.mark.local

STAGING, PROD = "222222222222", "333333333333"
STAGING_APP = Combo("demo", "staging", "app")
# worker is never released in this module: its launch template keeps Terraform's image.
STAGING_WORKER = Combo("demo", "staging", "worker")


def env_aws(project: Project, env: str) -> EnvAws:
    return project.env_aws(project.resolve("demo", env, "app"))


def verified_in_staging(project: Project, **bake: Any) -> amis.Image:
    source = bake_like(project, STAGING_APP, **bake)
    assert release(project, STAGING_APP, ami_id=source.id).outcome == "verified"
    return amis.describe(env_aws(project, "staging").client("ec2"), image_ids=[source.id])[0]


def copies_of(project: Project, source: amis.Image) -> list[amis.Image]:
    return amis.describe(env_aws(project, "prod").client("ec2"), owners=["self"], filters={
        f"tag:{amis.TAG_PROMOTED_FROM}": [f"staging/{source.id}"],
        "state": ["pending", "available", "failed"]})


def shares_of(project: Project, image: amis.Image) -> list[Any]:
    """Every launch and create-volume permission the image and its snapshots carry."""
    ec2 = env_aws(project, "staging").client("ec2")
    found = ec2.describe_image_attribute(ImageId=image.id,
                                         Attribute="launchPermission")["LaunchPermissions"]
    for snapshot in image.snapshot_ids:
        found += ec2.describe_snapshot_attribute(
            SnapshotId=snapshot, Attribute="createVolumePermission")["CreateVolumePermissions"]
    return list(found)


def grants_for_prod(project: Project, key: str) -> list[Any]:
    grants = env_aws(project, "staging").client("kms").list_grants(KeyId=key)["Grants"]
    return [g for g in grants if PROD in g["GranteePrincipal"]]


def test_promotes_the_verified_staging_ami_to_prod_re_encrypted_and_verified(
        local_stack: Project, cli: Any) -> None:
    source = verified_in_staging(local_stack)
    staging_key = env_aws(local_stack, "staging").client("kms").describe_key(
        KeyId="alias/demo-staging-ami")["KeyMetadata"]["Arn"]
    assert source.encrypted

    done = cli("--local", "promote", "demo", "app", "--to", "prod", "--json",
               root=local_stack.root)
    assert done.exit_code == 0, done.output
    promoted = json.loads(done.stdout)
    assert (promoted["source_ami"], promoted["account"], promoted["region"]) == (
        source.id, PROD, "eu-central-1")
    assert (promoted["reused"], promoted["shared"]) == (False, True)
    assert promoted["release"]["outcome"] == "verified"

    prod = env_aws(local_stack, "prod")
    ec2 = prod.client("ec2")
    copy = amis.describe(ec2, image_ids=[promoted["ami_id"]])[0]
    assert (copy.owner, copy.state, copy.encrypted) == (PROD, "available", True)
    assert copy.tags[amis.TAG_PROMOTED_FROM] == f"staging/{source.id}"
    assert copy.fingerprint == source.fingerprint and copy.source_ami == source.source_ami
    assert copy.tags[amis.TAG_BUILT_AT] == source.tags[amis.TAG_BUILT_AT]
    assert (copy.tags[amis.TAG_ENV], copy.status) == ("prod", amis.AmiStatus.VERIFIED)
    assert amis.verified_tag("prod") in copy.tags
    assert amis.verified_tag("staging") not in copy.tags
    snapshot = ec2.describe_snapshots(SnapshotIds=list(copy.snapshot_ids))["Snapshots"][0]
    prod_key = prod.client("kms").describe_key(KeyId="alias/demo-prod-ami")["KeyMetadata"]
    assert snapshot["KmsKeyId"] == prod_key["Arn"]
    assert {t["Key"]: t["Value"] for t in snapshot["Tags"]}[amis.TAG_PROMOTED_FROM] == (
        f"staging/{source.id}")
    # On prod's launch template, through an instance refresh (prod app's deploy_strategy)
    # that succeeded: the ASG's instances run the copy.
    assert fleet.default_image(ec2, "demo-prod-app") == copy.id
    assert promoted["release"]["strategy"] == "instance_refresh"
    [refresh] = fleet.refreshes(prod.client("autoscaling"), "demo-prod-app",
                                (promoted["release"]["deployment_id"],))
    assert refresh.status == "Successful"
    instances = prod.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=["demo-prod-app"])["AutoScalingGroups"][0]["Instances"]
    running = ec2.describe_instances(InstanceIds=[i["InstanceId"] for i in instances])
    assert {i["ImageId"] for r in running["Reservations"] for i in r["Instances"]} == {copy.id}
    # The share and the KMS grant were for the copy only.
    assert shares_of(local_stack, source) == []
    assert grants_for_prod(local_stack, staging_key) == []

    again = cli("--local", "promote", "demo", "app", "--to", "prod", "--json",
                root=local_stack.root)
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout)
    assert (second["ami_id"], second["reused"], second["shared"]) == (copy.id, True, False)
    assert second["release"]["outcome"] == "unchanged"
    assert [c.id for c in copies_of(local_stack, source)] == [copy.id]


def test_an_ami_not_verified_in_staging_is_refused(local_stack: Project, cli: Any) -> None:
    baked = bake_like(local_stack, STAGING_WORKER)
    refused = cli("--local", "promote", "demo", "worker", "--to", "prod", "--ami", baked.id,
                  root=local_stack.root)
    assert refused.exit_code == 2
    assert f"{baked.id} is not verified in staging (builder:status=baked)" in refused.stderr

    # Staging's template still launches the image Terraform put there: not builder's.
    base = fleet.default_image(env_aws(local_stack, "staging").client("ec2"),
                                   "demo-staging-worker")
    refused = cli("--local", "promote", "demo", "worker", "--to", "prod", root=local_stack.root)
    assert refused.exit_code == 2
    assert f"{base} in staging was not made by builder for demo/staging/worker" in refused.stderr
    assert copies_of(local_stack, baked) == [] and shares_of(local_stack, baked) == []


def test_preflight_refuses_an_ami_under_the_aws_managed_key(local_stack: Project,
                                                            cli: Any) -> None:
    source = verified_in_staging(local_stack, kms_key_id="")  # the account's EBS key
    refused = cli("--local", "promote", "demo", "app", "--to", "prod", "--ami", source.id,
                  root=local_stack.root)
    assert refused.exit_code == 2, refused.output
    assert "missing:" in refused.stderr
    assert "alias/aws/ebs" in refused.stderr
    assert "AWS-managed EBS key, which can't be shared with another account: set kms_key_id " \
           "for staging" in refused.stderr
    assert copies_of(local_stack, source) == [] and shares_of(local_stack, source) == []


def test_preflight_names_every_missing_piece(local_stack: Project, cli: Any) -> None:
    kms = env_aws(local_stack, "staging").client("kms")
    key_id = kms.create_key(Description="to be disabled")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/demo-staging-disabled", TargetKeyId=key_id)
    source = verified_in_staging(local_stack, kms_key_id="alias/demo-staging-disabled")
    kms.disable_key(KeyId=key_id)

    refused = cli("--local", "-e", "kms_key_id=alias/demo-prod-missing", "promote", "demo",
                  "app", "--to", "prod", "--ami", source.id, root=local_stack.root)
    assert refused.exit_code == 2, refused.output
    missing = [line.strip() for line in refused.stderr.splitlines()
               if line.strip().startswith("- ")]
    assert len(missing) == 2, refused.stderr
    assert missing[0].startswith(f"- source snapshots' KMS key usable by {PROD}: ")
    assert "is Disabled, not Enabled" in missing[0]
    assert missing[1].startswith("- prod's KMS key alias/demo-prod-missing: not usable in "
                                 f"account {PROD} eu-central-1")
    assert copies_of(local_stack, source) == [] and shares_of(local_stack, source) == []


# (a key policy's Action for prod, whether the preflight finds that it lets prod use the
# key): IAM matches action names case-insensitively, with `*` and `?` the only wildcards.
# tests/local/test_images.py holds the emulator to the same table.
POLICY_ACTIONS = [
    ("kms:Decrypt", True),
    ("kms:decrypt", True),
    ("KMS:DECRYPT", True),
    ("kms:*", True),
    ("*", True),
    ("kms:De*", True),
    ("kms:decrypt*", True),
    ("kms:?ecrypt", True),
    ("kms:Re*", False),
    ("kms:Encrypt", False),
    ("kms:Decrypt?", False),
    ("kms:Decryp", False),
    ("ec2:*", False),
    ("kms:[D]ecrypt", False),
]


def test_preflight_reads_key_policy_actions_as_iam_does(local_stack: Project) -> None:
    staging_aws, prod_aws = env_aws(local_stack, "staging"), env_aws(local_stack, "prod")
    kms = staging_aws.client("kms")
    key_id = kms.create_key(Description="action matching")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/demo-staging-actions", TargetKeyId=key_id)
    owner_policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    source = bake_like(local_stack, STAGING_APP, kms_key_id="alias/demo-staging-actions")

    def allowed(action: str) -> bool:
        statement = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PROD}:root"},
                     "Action": [action], "Resource": "*"}
        policy = {**owner_policy, "Statement": [*owner_policy["Statement"], statement]}
        kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(policy))
        plan = preflight(staging_aws, prod_aws, source, target_key="alias/demo-prod-ami",
                         source_env="staging", target_env="prod")
        [check] = [c for c in plan.checks if c.what.startswith("source snapshots' KMS key")]
        assert check.ok, check  # a grant makes up for a policy that doesn't allow it
        # Allowed by the policy: no grant to add.
        return plan.grant_key is None

    assert [(action, allowed(action)) for action, _ in POLICY_ACTIONS] == POLICY_ACTIONS


def test_a_copy_that_fails_is_removed_and_the_share_with_it(local_stack: Project) -> None:
    kms = env_aws(local_stack, "staging").client("kms")
    key_id = kms.create_key(Description="prod may use it, for a while")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/demo-staging-shared", TargetKeyId=key_id)
    policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    owner_only = json.dumps(policy)
    policy["Statement"].append({
        "Sid": "prod copies AMIs", "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{PROD}:root"},
        "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:CreateGrant", "kms:ReEncrypt*"],
        "Resource": "*"})
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(policy))
    source = verified_in_staging(local_stack, kms_key_id="alias/demo-staging-shared")
    messages: list[str] = []

    def progress(subject: str, message: str) -> None:
        # Someone takes prod out of the key policy after the preflight saw it there:
        # EC2 then accepts the copy and fails it.
        if message.startswith("preflight:") and not any(
                m.startswith("preflight:") for m in messages):
            with RUNNING.aside():  # not builder's call
                kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=owner_only)
        messages.append(message)

    with pytest.raises(PromotionFailed, match=r"Client\.InvalidKMSKey\.InvalidState"):
        promote(local_stack, "demo", "app", "prod", ami_id=source.id, progress=progress)
    assert any("policy of" in m and "allows 333333333333" in m for m in messages)
    assert copies_of(local_stack, source) == []  # the failed copy is gone
    assert shares_of(local_stack, source) == []


def test_the_copy_gets_its_own_deprecation_time(local_stack: Project) -> None:
    source = verified_in_staging(local_stack)
    deprecating = Project.open(str(local_stack.root), local_mode=LOCAL,
                               overrides={"ami_deprecate_after_days": "30"})
    before = datetime.now(UTC)

    done = promote(deprecating, "demo", "app", "prod", ami_id=source.id, deploy=False)

    copy = amis.describe(env_aws(local_stack, "prod").client("ec2"), image_ids=[done.ami_id])[0]
    assert copy.deprecation_time is not None
    # Thirty days from the copy, to the minute (EC2's precision).
    assert (before + timedelta(days=30) - timedelta(minutes=1) <= copy.deprecation_time
            <= datetime.now(UTC) + timedelta(days=30))
    assert source.deprecation_time is None  # the source was never given one
