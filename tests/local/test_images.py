"""Images across accounts as EC2 shares them, and newer base images on request."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from builder.aws import EnvAws, translate
from builder.aws.images import resolve_source
from builder.errors import AwsError, InputError
from builder.local import control
from builder.project import Project

pytestmark = pytest.mark.local

STAGING, PROD = "222222222222", "333333333333"
KEY_NOT_ACCESSIBLE = "Given key ID is not accessible"


def env_aws(project: Project, env: str) -> EnvAws:
    return project.env_aws(project.resolve("demo", env, "app"))


def baked_image(project: Project, env: str, name: str, kms_key_id: str | None) -> str:
    """An encrypted image of the env, as a bake leaves it (an encrypted copy of the base)."""
    aws = env_aws(project, env)
    base = resolve_source(aws.client("ec2"), project.resolve("demo", env, "app").settings)
    encryption: dict[str, Any] = {"Encrypted": True}
    if kms_key_id:
        encryption["KmsKeyId"] = kms_key_id
    image_id: str = aws.client("ec2").copy_image(
        SourceImageId=base.id, SourceRegion=aws.region, Name=name, **encryption)["ImageId"]
    return image_id


def error_code(call: Any) -> str:
    with pytest.raises(AwsError) as failed, translate("calling"):
        call()
    return failed.value.code


def image(ec2: Any, image_id: str) -> dict[str, Any]:
    found: dict[str, Any] = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    return found


def snapshot(ec2: Any, found: dict[str, Any]) -> dict[str, Any]:
    snapshot_id = found["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    answer: dict[str, Any] = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]
    return answer


def test_copy_from_another_account_needs_launch_storage_and_key_permissions(
        local_stack: Project) -> None:
    staging = env_aws(local_stack, "staging").client("ec2")
    prod_aws = env_aws(local_stack, "prod")
    prod_view = prod_aws.client("ec2", region="eu-west-1")  # the source region
    prod = prod_aws.client("ec2")
    ami = baked_image(local_stack, "staging", "demo-staging-app-shared",
                      "alias/demo-staging-ami")
    staging_key = env_aws(local_stack, "staging").client("kms").describe_key(
        KeyId="alias/demo-staging-ami")["KeyMetadata"]["Arn"]
    assert snapshot(staging, image(staging, ami))["KmsKeyId"] == staging_key

    def copy(name: str = "demo-prod-app-copy") -> str:
        copied: str = prod.copy_image(SourceImageId=ami, SourceRegion="eu-west-1", Name=name,
                                      Encrypted=True, KmsKeyId="alias/demo-prod-ami")["ImageId"]
        return copied

    # Not shared: another account's image doesn't exist for prod.
    assert error_code(lambda: prod_view.describe_images(ImageIds=[ami])) == "InvalidAMIID.NotFound"
    assert error_code(copy) == "InvalidAMIID.NotFound"

    staging.modify_image_attribute(ImageId=ami,
                                   LaunchPermission={"Add": [{"UserId": PROD}]})
    assert image(prod_view, ami)["OwnerId"] == STAGING
    assert ami in [i["ImageId"] for i in
                   prod_view.describe_images(ExecutableUsers=["self"])["Images"]]
    assert ami in [i["ImageId"] for i in prod_view.describe_images(Owners=[STAGING])["Images"]]
    # Only the owner decides who may launch it.
    assert error_code(lambda: prod_view.modify_image_attribute(
        ImageId=ami, LaunchPermission={"Add": [{"UserId": "111111111111"}]})) == "AuthFailure"
    # Launch permission alone: the snapshot is not readable.
    assert error_code(copy) == "InvalidRequest"

    staging.modify_snapshot_attribute(
        SnapshotId=image(staging, ami)["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"],
        Attribute="createVolumePermission", OperationType="add", UserIds=[PROD])
    # The key is still staging's alone: EC2 accepts the copy and fails it.
    failed = image(prod, copy("demo-prod-app-no-key"))
    assert failed["State"] == "failed"
    assert KEY_NOT_ACCESSIBLE in failed["StateReason"]["Message"]
    assert snapshot(prod, failed)["StateMessage"] == KEY_NOT_ACCESSIBLE

    env_aws(local_stack, "staging").client("kms").create_grant(
        KeyId=staging_key, GranteePrincipal=f"arn:aws:iam::{PROD}:root",
        Operations=["Decrypt", "DescribeKey", "CreateGrant", "ReEncryptFrom"])
    copied = image(prod, copy())
    assert (copied["State"], copied["OwnerId"]) == ("available", PROD)
    assert copied["BlockDeviceMappings"][0]["Ebs"]["Encrypted"]
    prod_key = prod_aws.client("kms").describe_key(KeyId="alias/demo-prod-ami")["KeyMetadata"]
    assert snapshot(prod, copied)["KmsKeyId"] == prod_key["Arn"]
    assert snapshot(prod, copied)["OwnerId"] == PROD


def test_a_key_policy_may_allow_the_copy_instead_of_a_grant(local_stack: Project) -> None:
    staging_aws = env_aws(local_stack, "staging")
    kms = staging_aws.client("kms")
    key_id = kms.create_key(Description="policy test")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/policy-test", TargetKeyId=key_id)
    staging = staging_aws.client("ec2")
    ami = baked_image(local_stack, "staging", "demo-staging-app-policy", "alias/policy-test")
    staging.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": PROD}]})
    staging.modify_snapshot_attribute(
        SnapshotId=image(staging, ami)["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"],
        Attribute="createVolumePermission", OperationType="add", UserIds=[PROD])
    prod = env_aws(local_stack, "prod").client("ec2")

    def copy(name: str) -> dict[str, Any]:
        return image(prod, prod.copy_image(SourceImageId=ami, SourceRegion="eu-west-1",
                                           Name=name, Encrypted=True)["ImageId"])

    assert copy("demo-prod-policy-denied")["State"] == "failed"
    policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    policy["Statement"].append({
        "Sid": "prod may copy", "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{PROD}:root"},
        "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:CreateGrant", "kms:ReEncrypt*"],
        "Resource": "*"})
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(policy))
    assert copy("demo-prod-policy-allowed")["State"] == "available"


# (a key policy's Action, whether it lets another account copy what the key encrypts):
# IAM matches action names case-insensitively, with `*` and `?` the only wildcards.
# tests/pipelines/test_promote.py holds the promote preflight to the same table.
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


def test_key_policy_actions_match_as_iam_matches_them(local_stack: Project) -> None:
    staging_aws = env_aws(local_stack, "staging")
    kms = staging_aws.client("kms")
    key_id = kms.create_key(Description="action matching")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/demo-staging-actions", TargetKeyId=key_id)
    owner_policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    staging = staging_aws.client("ec2")
    ami = baked_image(local_stack, "staging", "demo-staging-app-actions",
                      "alias/demo-staging-actions")
    staging.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": PROD}]})
    staging.modify_snapshot_attribute(
        SnapshotId=image(staging, ami)["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"],
        Attribute="createVolumePermission", OperationType="add", UserIds=[PROD])
    prod = env_aws(local_stack, "prod").client("ec2")

    def copied(number: int, action: str) -> bool:
        statement = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PROD}:root"},
                     "Action": action, "Resource": "*"}
        policy = {**owner_policy, "Statement": [*owner_policy["Statement"], statement]}
        kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(policy))
        copy_id = prod.copy_image(SourceImageId=ami, SourceRegion="eu-west-1",
                                  Name=f"demo-prod-app-action-{number}",
                                  Encrypted=True)["ImageId"]
        return str(image(prod, copy_id)["State"]) == "available"

    assert [(action, copied(n, action)) for n, (action, _) in enumerate(POLICY_ACTIONS)] == \
        POLICY_ACTIONS


def test_an_image_under_the_aws_managed_key_cannot_be_shared(local_stack: Project) -> None:
    ami = baked_image(local_stack, "dev", "demo-dev-app-default-key", None)
    dev = env_aws(local_stack, "dev").client("ec2")
    assert error_code(lambda: dev.modify_image_attribute(
        ImageId=ami, LaunchPermission={"Add": [{"UserId": STAGING}]})) == "InvalidParameter"


def test_publish_source_ami_makes_the_filter_resolve_to_a_newer_image(
        local_stack: Project, cli: Any) -> None:
    def newest(env: str) -> Any:
        return resolve_source(env_aws(local_stack, env).client("ec2"),
                              local_stack.resolve("demo", env, "app").settings)

    before, prod_before = newest("dev"), newest("prod")
    result = cli("local", "publish-source-ami", "demo", "dev", "--json", root=local_stack.root)
    assert result.exit_code == 0, result.output
    published = json.loads(result.stdout)["images"]
    assert len(published) == 1  # app and worker share the filter
    first = published[0]
    assert first["previous"] == before.id and first["owner"] == "099720109477"
    after = newest("dev")
    assert after.id == first["image_id"] and after.created > before.created
    assert after.name != before.name and after.name.startswith(before.name[:-8])
    assert newest("staging").id == after.id  # same region, every account sees it
    assert newest("prod").id == prod_before.id  # another region: unchanged

    again = json.loads(cli("local", "publish-source-ami", "demo", "dev", "--json",
                           root=local_stack.root).stdout)["images"][0]
    latest = newest("dev")
    assert latest.id == again["image_id"] and latest.name not in (before.name, after.name)
    assert latest.created > after.created


def test_a_copy_with_a_key_the_account_cannot_use_fails_after_it_is_accepted(
        local_stack: Project) -> None:
    """EC2 checks KmsKeyId only after accepting CopyImage: the copy ends `failed`."""
    staging_aws, prod_aws = env_aws(local_stack, "staging"), env_aws(local_stack, "prod")
    staging = staging_aws.client("ec2")
    base = resolve_source(staging, local_stack.resolve("demo", "staging", "app").settings)
    kms = staging_aws.client("kms")
    disabled = kms.create_key(Description="disabled")["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=disabled)
    prod_key = prod_aws.client("kms").describe_key(KeyId="alias/demo-prod-ami")["KeyMetadata"]
    dev_key = env_aws(local_stack, "dev").client("kms").create_key(
        Description="another account's")["KeyMetadata"]["Arn"]
    unusable = {
        "alias/no-such-alias": "unknown alias",
        "1234abcd-12ab-34cd-56ef-1234567890ab": "unknown key id",
        disabled: "disabled",
        prod_key["Arn"]: "another region",
        dev_key: "another account's, not granted",
    }
    for key_id, why in unusable.items():
        copy_id = staging.copy_image(SourceImageId=base.id, SourceRegion=staging_aws.region,
                                     Name=f"demo-staging-bad-key-{why.replace(' ', '-')}"[:60],
                                     Encrypted=True, KmsKeyId=key_id)["ImageId"]
        failed = image(staging, copy_id)
        assert failed["State"] == "failed", why
        assert KEY_NOT_ACCESSIBLE in failed["StateReason"]["Message"], why
        assert snapshot(staging, failed)["State"] == "error", why

    good = image(staging, staging.copy_image(
        SourceImageId=base.id, SourceRegion=staging_aws.region, Name="demo-staging-good-key",
        Encrypted=True, KmsKeyId="alias/demo-staging-ami")["ImageId"])
    assert good["State"] == "available"


def test_calls_only_the_owner_may_make_and_unknown_aliases_are_client_errors(
        local_stack: Project) -> None:
    dev_aws = env_aws(local_stack, "dev")
    dev = dev_aws.client("ec2")
    base = resolve_source(dev, local_stack.resolve("demo", "dev", "app").settings)
    # Canonical's image: visible to every account, its attributes only to Canonical.
    assert error_code(lambda: dev.describe_image_attribute(
        ImageId=base.id, Attribute="launchPermission")) == "AuthFailure"
    assert error_code(lambda: dev.describe_image_attribute(
        ImageId="ami-0123456789abcdef0", Attribute="launchPermission")) == "InvalidAMIID.NotFound"
    own = dev.copy_image(SourceImageId=base.id, SourceRegion=dev_aws.region,
                         Name="demo-dev-app-attributes")["ImageId"]
    assert dev.describe_image_attribute(ImageId=own, Attribute="launchPermission")[
        "LaunchPermissions"] == []

    kms = dev_aws.client("kms")
    for call in (lambda: kms.list_grants(KeyId="alias/no-such-alias"),
                 lambda: kms.create_grant(KeyId="alias/no-such-alias", Operations=["Decrypt"],
                                          GranteePrincipal=f"arn:aws:iam::{PROD}:root"),
                 lambda: kms.revoke_grant(KeyId="alias/no-such-alias", GrantId="x")):
        assert error_code(call) == "NotFoundException"


def test_an_image_may_be_dated_so_tests_order_images_without_waiting(
        local_stack: Project) -> None:
    dev_aws = env_aws(local_stack, "dev")
    ami = baked_image(local_stack, "dev", "demo-dev-app-dated", None)
    endpoint = str(local_stack.aws.local_endpoint)
    answer = control.call(endpoint, "images/creation-date", {
        "account": dev_aws.account_id, "region": dev_aws.region, "image_id": ami,
        "creation_date": "2024-05-01T10:00:00+00:00"})
    assert answer["image_id"] == ami
    created = image(dev_aws.client("ec2"), ami)["CreationDate"]
    assert datetime.fromisoformat(created) == datetime(2024, 5, 1, 10, tzinfo=UTC)
    with pytest.raises(InputError, match="no image ami-0123456789abcdef0"):
        control.call(endpoint, "images/creation-date", {
            "account": dev_aws.account_id, "region": dev_aws.region,
            "image_id": "ami-0123456789abcdef0", "creation_date": "2024-05-01T10:00:00Z"})


def test_a_protected_image_cannot_be_deregistered_until_its_protection_is_off(
        local_stack: Project) -> None:
    ec2 = env_aws(local_stack, "staging").client("ec2")
    image_id = baked_image(local_stack, "staging", "protected-image", "alias/demo-staging-ami")
    assert image(ec2, image_id)["DeregistrationProtection"] == "disabled"

    ec2.enable_image_deregistration_protection(ImageId=image_id, WithCooldown=False)
    assert image(ec2, image_id)["DeregistrationProtection"] == "enabled-without-cooldown"
    with pytest.raises(AwsError) as refused, translate("deregistering"):
        ec2.deregister_image(ImageId=image_id)
    assert refused.value.code == "OperationNotPermitted"
    assert "deregistration protection enabled" in refused.value.message
    assert image(ec2, image_id)["State"] == "available"

    ec2.disable_image_deregistration_protection(ImageId=image_id)
    assert image(ec2, image_id)["DeregistrationProtection"] == "disabled"
    ec2.deregister_image(ImageId=image_id)
    assert ec2.describe_images(Owners=["self"], Filters=[
        {"Name": "name", "Values": ["protected-image"]}])["Images"] == []


def test_deprecation_time_and_last_launch_show_in_describe_images(local_stack: Project
                                                                   ) -> None:
    ec2 = env_aws(local_stack, "staging").client("ec2")
    image_id = baked_image(local_stack, "staging", "aging-image", "alias/demo-staging-ami")
    assert "DeprecationTime" not in image(ec2, image_id)
    assert "LastLaunchedTime" not in image(ec2, image_id)

    ec2.enable_image_deprecation(ImageId=image_id,
                                 DeprecateAt=datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC))
    assert image(ec2, image_id)["DeprecationTime"] == "2031-05-04T03:02:00.000Z"
    ec2.disable_image_deprecation(ImageId=image_id)
    assert "DeprecationTime" not in image(ec2, image_id)

    before = datetime.now(UTC).replace(microsecond=0)
    instance = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1,
                                 InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    ec2.terminate_instances(InstanceIds=[instance])
    launched = datetime.fromisoformat(image(ec2, image_id)["LastLaunchedTime"])
    assert before <= launched <= datetime.now(UTC)


def test_tags_and_tag_filters_answer_per_resource(local_stack: Project) -> None:
    """The emulator reads one resource's tags from the tag table (moto scanned them all):
    each image and snapshot shows its own tags, and tag filters pick by them."""
    ec2 = env_aws(local_stack, "staging").client("ec2")
    made = [baked_image(local_stack, "staging", f"tags-{n}", None) for n in range(3)]
    for n, image_id in enumerate(made):
        found = image(ec2, image_id)
        ec2.create_tags(Resources=[image_id, found["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]],
                        Tags=[{"Key": "builder:app", "Value": f"tags{n % 2}"},
                              {"Key": "n", "Value": str(n)}])
    for n, image_id in enumerate(made):
        found = image(ec2, image_id)
        assert {t["Key"]: t["Value"] for t in found["Tags"]} == {"builder:app": f"tags{n % 2}",
                                                                 "n": str(n)}
        assert {t["Key"]: t["Value"] for t in snapshot(ec2, found)["Tags"]}["n"] == str(n)
    picked = ec2.describe_images(Owners=["self"], Filters=[
        {"Name": "tag:builder:app", "Values": ["tags0"]}])["Images"]
    assert sorted(i["ImageId"] for i in picked) == sorted([made[0], made[2]])
    keyed = ec2.describe_images(Owners=["self"], Filters=[
        {"Name": "tag-key", "Values": ["n"]}, {"Name": "tag:n", "Values": ["1"]}])["Images"]
    assert [i["ImageId"] for i in keyed] == [made[1]]
