"""Letting another account copy an AMI: what must be true first (the preflight, which
changes nothing), then the share itself and its removal.

Another account copies an AMI when it may launch it (launch permission), read its
snapshots (create-volume permission) and, for encrypted snapshots, use their KMS key
(the key policy or a grant). Only the owner changes the first two; a grant is added by
the key's own account. An AMI encrypted with an account's AWS-managed EBS key can't be
shared at all.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from builder.aws.images import Image, owner
from builder.aws.partition import ARN_PARTITION, arn
from builder.aws.session import EnvAws, translate
from builder.errors import AwsError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import LaunchPermissionTypeDef, SnapshotTypeDef
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_kms.literals import GrantOperationType

# What the copying account does with the source key (EC2 CopyImage, re-encryption).
GRANT_OPERATIONS: tuple[GrantOperationType, ...] = (
    "Decrypt", "DescribeKey", "CreateGrant", "ReEncryptFrom", "GenerateDataKeyWithoutPlaintext")
_AWS_MANAGED_ALIAS = "alias/aws/"
# On the source AMI while a promotion shares it: `builder:sharing:<target account>` =
# `<what was added: L launch, S snapshots, G grant> <grant name> <owner> <UTC start>`,
# so a re-run of that promotion, or `builder reap`, removes a share a killed run left.
SHARING_TAG_PREFIX = "builder:sharing:"
_KEY_ARN = re.compile(
    rf"arn:{ARN_PARTITION}:kms:(?P<region>[\w-]+):(?P<account>\d{{12}}):key/.+")


@dataclass(frozen=True)
class Check:
    """One preflight finding: `ok` false means the promotion can't start."""

    what: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class SharePlan:
    """What the share adds (and removes afterwards), found by the preflight."""

    image: Image
    to_account: str
    launch_permission: bool = False  # add one for `to_account`
    snapshots: tuple[str, ...] = ()  # snapshots to give `to_account` create-volume permission
    grant_key: str | None = None  # the key to grant `to_account` use of
    checks: tuple[Check, ...] = ()

    @property
    def missing(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


@dataclass
class Shared:
    """What was actually added, so exactly that is removed."""

    launch_permission: bool = False
    snapshots: list[str] = field(default_factory=list)
    grant: tuple[str, str] | None = None  # (key ARN, grant id)

    @property
    def anything(self) -> bool:
        return self.launch_permission or bool(self.snapshots) or self.grant is not None


def preflight(source: EnvAws, target: EnvAws, image: Image, *, target_key: str,
              source_env: str, target_env: str) -> SharePlan:
    """Everything a copy of `image` by `target` needs, checked without changing anything."""
    checks: list[Check] = []
    cross_account = source.account_id != target.account_id
    launch, grant_key = False, None
    snapshots: tuple[str, ...] = ()
    snapshots_info = _snapshots(source, image)
    if cross_account:
        checks.append(_ownership(source, image, source_env))
        launch = not _launch_shared(source, image, target.account_id)
        snapshots = tuple(s["SnapshotId"] for s in snapshots_info
                          if not _volume_shared(source, s["SnapshotId"], target.account_id))
        if launch:
            checks.append(_may(source, f"{source_env} may share images (ec2:ModifyImageAttribute)",
                               lambda ec2: ec2.modify_image_attribute(
                                   ImageId=image.id, DryRun=True,
                                   LaunchPermission={"Add": [{"UserId": target.account_id}]})))
        if snapshots:
            checks.append(_may(source, f"{source_env} may share snapshots "
                                       "(ec2:ModifySnapshotAttribute)",
                               lambda ec2: ec2.modify_snapshot_attribute(
                                   SnapshotId=snapshots[0], Attribute="createVolumePermission",
                                   OperationType="add", UserIds=[target.account_id],
                                   DryRun=True)))
        keys = sorted({str(s["KmsKeyId"]) for s in snapshots_info
                       if s.get("Encrypted") and s.get("KmsKeyId")})
        for key in keys:
            check, needs_grant = _source_key(source, key, target.account_id, source_env)
            checks.append(check)
            grant_key = key if needs_grant else grant_key
    checks.append(_may(target, f"{target_env} may copy images (ec2:CopyImage)",
                       lambda ec2: ec2.copy_image(SourceImageId=image.id,
                                                  SourceRegion=source.region,
                                                  Name="builder-preflight", DryRun=True)))
    if target_key:
        checks.append(_target_key(target, target_key, target_env))
    return SharePlan(image, target.account_id, launch, snapshots, grant_key, tuple(checks))


@contextmanager
def shared(source: EnvAws, plan: SharePlan, *, name: str) -> Iterator[Shared]:
    """Add what the plan says for the duration of the block, and remove it after,
    whatever happens (an interrupted promotion leaves no share behind; a killed one
    leaves a `builder:sharing:` tag on the source AMI saying what to remove)."""
    done = Shared()
    ec2 = source.client("ec2")
    flags = ("L" if plan.launch_permission else "") + ("S" if plan.snapshots else "") + (
        "G" if plan.grant_key else "")
    tag = SHARING_TAG_PREFIX + plan.to_account
    if flags:
        started = datetime.now(UTC).isoformat(timespec="seconds")
        with translate(f"marking {plan.image.id} as shared with {plan.to_account}"):
            ec2.create_tags(Resources=[plan.image.id], Tags=[
                {"Key": tag, "Value": f"{flags} {name} {owner()} {started}"}])
    try:
        if plan.launch_permission:
            with translate(f"sharing {plan.image.id} with {plan.to_account}"):
                ec2.modify_image_attribute(ImageId=plan.image.id, LaunchPermission={
                    "Add": [{"UserId": plan.to_account}]})
            done.launch_permission = True
        for snapshot in plan.snapshots:
            with translate(f"sharing {snapshot} with {plan.to_account}"):
                ec2.modify_snapshot_attribute(
                    SnapshotId=snapshot, Attribute="createVolumePermission",
                    OperationType="add", UserIds=[plan.to_account])
            done.snapshots.append(snapshot)
        if plan.grant_key:
            kms = _kms(source, plan.grant_key)
            with translate(f"granting {plan.to_account} use of {plan.grant_key}"):
                grant = kms.create_grant(
                    KeyId=plan.grant_key,
                    GranteePrincipal=_root(source.region, plan.to_account),
                    Operations=list(GRANT_OPERATIONS), Name=name)
            done.grant = (plan.grant_key, str(grant["GrantId"]))
        yield done
    finally:
        _unshare(source, plan, done)
        if flags:
            with translate(f"unmarking {plan.image.id}"):
                ec2.delete_tags(Resources=[plan.image.id], Tags=[{"Key": tag}])


@dataclass(frozen=True)
class LeftShare:
    """A share a promotion recorded on its source AMI and did not remove (killed)."""

    image: Image
    account: str
    flags: str
    grant_name: str
    owner: str
    started_at: str

    @property
    def label(self) -> str:
        return f"{self.image.id} -> {self.account}"


def left_shares(image: Image) -> list[LeftShare]:
    """The shares recorded on `image` by promotions that have not removed them."""
    found = []
    for key, value in image.tags.items():
        if key.startswith(SHARING_TAG_PREFIX):
            flags, grant_name, who, started = ([*value.split(" "), "", "", "", ""])[:4]
            found.append(LeftShare(image, key.removeprefix(SHARING_TAG_PREFIX), flags,
                                   grant_name, who, started))
    return found


def remove_left_share(source: EnvAws, left: LeftShare) -> None:
    """Undo what a killed promotion added (the launch permission, the snapshots'
    create-volume permissions, its KMS grants by name), then drop the record."""
    ec2 = source.client("ec2")
    if "G" in left.flags:
        keys = sorted({str(s["KmsKeyId"]) for s in _snapshots(source, left.image)
                       if s.get("KmsKeyId")})
        for key in keys:
            kms = _kms(source, key)
            with translate(f"listing the grants of {key}"):
                grants = [g for page in kms.get_paginator("list_grants").paginate(KeyId=key)
                          for g in page.get("Grants", []) if g.get("Name") == left.grant_name]
            for grant in grants:
                with translate(f"revoking grant {grant['GrantId']} on {key}"):
                    kms.revoke_grant(KeyId=key, GrantId=grant["GrantId"])
    if "S" in left.flags:
        for snapshot in left.image.snapshot_ids:
            with translate(f"unsharing {snapshot}"):
                ec2.modify_snapshot_attribute(
                    SnapshotId=snapshot, Attribute="createVolumePermission",
                    OperationType="remove", UserIds=[left.account])
    if "L" in left.flags:
        with translate(f"unsharing {left.image.id}"):
            ec2.modify_image_attribute(ImageId=left.image.id, LaunchPermission={
                "Remove": [{"UserId": left.account}]})
    with translate(f"unmarking {left.image.id}"):
        ec2.delete_tags(Resources=[left.image.id],
                        Tags=[{"Key": SHARING_TAG_PREFIX + left.account}])


def _unshare(source: EnvAws, plan: SharePlan, done: Shared) -> None:
    """Remove what was added; every step is tried even when one fails."""
    ec2 = source.client("ec2")
    steps: list[tuple[str, Callable[[], object]]] = []
    if done.grant is not None:
        key, grant_id = done.grant
        steps.append((f"revoking grant {grant_id} on {key}",
                      lambda: _kms(source, key).revoke_grant(KeyId=key, GrantId=grant_id)))
    steps.extend((f"unsharing {snapshot}", partial(
        ec2.modify_snapshot_attribute, SnapshotId=snapshot, Attribute="createVolumePermission",
        OperationType="remove", UserIds=[plan.to_account])) for snapshot in done.snapshots)
    if done.launch_permission:
        steps.append((f"unsharing {plan.image.id}", lambda: ec2.modify_image_attribute(
            ImageId=plan.image.id, LaunchPermission={"Remove": [{"UserId": plan.to_account}]})))
    failures: list[AwsError] = []
    for doing, step in steps:
        try:
            with translate(doing):
                step()
        except AwsError as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


# -- the checks ------------------------------------------------------------------------


def _snapshots(source: EnvAws, image: Image) -> list[SnapshotTypeDef]:
    if not image.snapshot_ids:
        return []
    with translate(f"reading the snapshots of {image.id}"):
        return source.client("ec2").describe_snapshots(
            SnapshotIds=list(image.snapshot_ids))["Snapshots"]


def _ownership(source: EnvAws, image: Image, source_env: str) -> Check:
    ok = image.owner == source.account_id
    detail = (f"{image.id} belongs to {source_env}'s account {source.account_id}" if ok else
              f"{image.id} belongs to account {image.owner}, not {source_env}'s "
              f"{source.account_id}: only its owner can share it")
    return Check("source AMI owned by the source account", ok, detail)


def launch_permissions(ec2: EC2Client, image_id: str) -> list[LaunchPermissionTypeDef]:
    """Who, besides its owner, may launch (and so copy) an image: {"UserId": account},
    {"Group": "all"}, {"OrganizationArn": ...} or {"OrganizationalUnitArn": ...}."""
    with translate(f"reading who may launch {image_id}"):
        return ec2.describe_image_attribute(
            ImageId=image_id, Attribute="launchPermission").get("LaunchPermissions", [])


def _launch_shared(source: EnvAws, image: Image, account: str) -> bool:
    return any(p.get("UserId") == account or p.get("Group") == "all"
               for p in launch_permissions(source.client("ec2"), image.id))


def _volume_shared(source: EnvAws, snapshot: str, account: str) -> bool:
    with translate(f"reading who may read {snapshot}"):
        permissions = source.client("ec2").describe_snapshot_attribute(
            SnapshotId=snapshot, Attribute="createVolumePermission"
        ).get("CreateVolumePermissions", [])
    return any(p.get("UserId") == account or p.get("Group") == "all" for p in permissions)


def _may(env: EnvAws, what: str, call: Callable[[EC2Client], object]) -> Check:
    """An EC2 permission, asked with DryRun: AWS answers DryRunOperation when allowed."""
    try:
        with translate(what):
            call(env.client("ec2"))
    except AwsError as exc:
        if exc.code == "DryRunOperation":
            return Check(what, True, "allowed")
        if exc.code in ("UnauthorizedOperation", "AccessDenied", "AuthFailure"):
            return Check(what, False, f"denied in account {env.account_id}: {exc.message}")
        # Anything else (e.g. the image not shared yet) is not about the permission.
        return Check(what, True, f"not checkable before sharing ({exc.code})")
    return Check(what, True, "allowed")


def _source_key(source: EnvAws, key: str, account: str, source_env: str) -> tuple[Check, bool]:
    """Whether `account` may use the snapshots' key, or a grant can make it so.
    Returns the check and whether a grant is to be added."""
    what = f"source snapshots' KMS key usable by {account}"
    kms = _kms(source, key)
    try:
        with translate(f"reading KMS key {key}"):
            metadata = kms.describe_key(KeyId=key)["KeyMetadata"]
            aliases = [a["AliasName"] for a in kms.list_aliases(KeyId=metadata["KeyId"])["Aliases"]]
    except AwsError as exc:
        return Check(what, False, f"{source_env} can't read key {key}: {exc.message}"), False
    if metadata.get("KeyManager") == "AWS" or any(
            a.startswith(_AWS_MANAGED_ALIAS) for a in aliases):
        return Check(what, False, (
            f"{key} ({', '.join(aliases) or 'AWS managed'}) is {source_env}'s AWS-managed EBS "
            f"key, which can't be shared with another account: set kms_key_id for "
            f"{source_env} to a customer-managed key and bake again")), False
    if metadata.get("KeyState") != "Enabled":
        return Check(what, False, f"{key} is {metadata.get('KeyState')}, not Enabled"), False
    if _policy_allows(kms, key, account):
        return Check(what, True, f"the key policy of {key} allows {account}"), False
    if _granted(kms, key, account):
        return Check(what, True, f"a grant on {key} allows {account}"), False
    owner = metadata.get("AWSAccountId") or _key_account(key)
    if owner != source.account_id:
        return Check(what, False, (
            f"{key} belongs to account {owner}: its key policy must allow {account} "
            "kms:Decrypt, kms:DescribeKey, kms:CreateGrant and kms:ReEncrypt*")), False
    return Check(what, True, f"a grant on {key} for {account} will be added for the copy"), True


def _target_key(target: EnvAws, key: str, target_env: str) -> Check:
    what = f"{target_env}'s KMS key {key}"
    try:
        with translate(f"reading KMS key {key}"):
            metadata = target.client("kms").describe_key(KeyId=key)["KeyMetadata"]
    except AwsError as exc:
        return Check(what, False, (f"not usable in account {target.account_id} "
                                   f"{target.region}: {exc.message}"))
    state = metadata.get("KeyState")
    return Check(what, state == "Enabled", f"{metadata.get('Arn', key)} is {state}")


def _policy_allows(kms: KMSClient, key: str, account: str) -> bool:
    try:
        with translate(f"reading the key policy of {key}"):
            policy = kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]
        statements = json.loads(policy or "{}").get("Statement", [])
    except (AwsError, ValueError, AttributeError):
        return False
    return any(_statement_allows(s, account)
               for s in (statements if isinstance(statements, list) else [statements]))


def _statement_allows(statement: Any, account: str) -> bool:
    if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
        return False
    principal = statement.get("Principal")
    principals = _as_list(principal.get("AWS") if isinstance(principal, dict) else principal)
    return (any(_names_account(p, account) for p in principals)
            and any(_covers(a, "kms:Decrypt") for a in _as_list(statement.get("Action"))))


def _covers(pattern: str, action: str) -> bool:
    """Whether a policy's Action entry covers `action`, as IAM reads it: case-insensitive,
    with `*` and `?` the only wildcards (a `[` is just a character, unlike in globs)."""
    return fnmatch.fnmatchcase(action.lower(), pattern.lower().replace("[", "[[]"))


def _granted(kms: KMSClient, key: str, account: str) -> bool:
    with translate(f"listing the grants of {key}"):
        grants = [g for page in kms.get_paginator("list_grants").paginate(KeyId=key)
                  for g in page.get("Grants", [])]
    return any(_names_account(str(g.get("GranteePrincipal", "")), account)
               and "Decrypt" in g.get("Operations", []) for g in grants)


def _names_account(principal: str, account: str) -> bool:
    return principal in ("*", account) or bool(
        re.match(rf"arn:{ARN_PARTITION}:(iam|sts)::{account}:", principal))


def _as_list(value: Any) -> Sequence[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _kms(source: EnvAws, key: str) -> KMSClient:
    match = _KEY_ARN.fullmatch(key)
    return source.client("kms", region=match.group("region") if match else None)


def _key_account(key: str) -> str:
    match = _KEY_ARN.fullmatch(key)
    return match.group("account") if match else ""


def _root(region: str, account: str) -> str:
    """The account as a principal, in the partition of `region`."""
    return arn(region, "iam", account, "root", in_region=False)
