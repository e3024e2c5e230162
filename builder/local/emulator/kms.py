"""KMS as EC2 and other accounts meet it: finding a key by any of its names across
accounts, whether an account may use another account's key (a grant, or a key policy
statement read as AWS reads it), and KMS's own error for an unknown alias.
"""

from __future__ import annotations

import json
import re
from typing import Any

from moto.core.exceptions import JsonRESTError
from moto.kms.exceptions import NotFoundException
from moto.kms.models import KmsBackend, kms_backends

from builder.aws.partition import ARN_PARTITION, arn
from builder.local.emulator.moto_internals import original

DEFAULT_EBS_KEY_ALIAS = "alias/aws/ebs"
# The action an account needs on another account's key to copy what it encrypts.
DECRYPT = "kms:Decrypt"


def find_key(key_id: str, region: str, account: str) -> Any | None:
    """The KMS key an id, ARN, alias or alias ARN names, in the account and region an ARN
    says, else in `account`/`region`; None when there is no such key. Only the backend of
    `account`/`region` (the caller's own) may be made by looking, as AWS makes the
    AWS-managed keys on first use; other accounts' are only read."""
    home_region, home_account = _key_home(key_id, region, account)
    kms: KmsBackend | None
    if account and (home_region, home_account) == (region, account):
        kms = kms_backends[account][region]
    else:
        regions = dict.get(kms_backends, home_account)
        kms = dict.get(regions, home_region) if regions is not None else None
    if kms is None:
        return None
    try:
        return kms.describe_key(key_id)
    except (JsonRESTError, KeyError, TypeError):  # moto's ways of saying "no such key"
        return None


def _key_home(key_id: str, region: str, account: str) -> tuple[str, str]:
    match = re.fullmatch(rf"arn:{ARN_PARTITION}:kms:([\w-]+):(\d{{12}}):.*", key_id)
    return (match.group(1), match.group(2)) if match else (region, account)


def usable_key_arn(key_id: str, region: str, account: str) -> str | None:
    """The ARN of the key `account` encrypts with in `region` when it names `key_id`, as
    EC2 records it; None when EC2 can't use it there: it must be in that region, enabled,
    and the account's own or usable by it."""
    key = find_key(key_id, region, account)
    if key is None or key.region != region or key.key_state != "Enabled":
        return None
    if key.account_id != account and not may_use_key(key.arn, account):
        return None
    return str(key.arn)


def is_default_ebs_key(key_id: str | None, region: str, account: str) -> bool:
    """Whether `key_id` is the account's AWS-managed EBS key (which can't be shared)."""
    key = find_key(key_id, region, account) if key_id else None
    return key is not None and DEFAULT_EBS_KEY_ALIAS in key.aliases


def may_use_key(key_arn: str, account_id: str) -> bool:
    """Whether an account may decrypt with a key of another account: a grant to one of
    its principals, or a key policy statement allowing it kms:Decrypt."""
    key = find_key(key_arn, "", "")
    if key is None or key.key_state != "Enabled":
        return False
    if any(_names_account(grant.grantee_principal, account_id)
           and "Decrypt" in grant.operations for grant in key.grants.values()):
        return True
    return any(_allows(statement, account_id, DECRYPT) for statement in _statements(key.policy))


def action_matches(pattern: str, action: str) -> bool:
    """A policy's Action entry against an action, as IAM matches them: case-insensitive,
    `*` standing for any run of characters and `?` for one (`kms:decrypt`, `kms:*`,
    `kms:Re*` and `*` all cover their actions)."""
    regex = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char)
                    for char in pattern)
    return re.fullmatch(regex, action, re.IGNORECASE | re.DOTALL) is not None


def any_id_to_key_id(self: KmsBackend, key_id: str) -> str:
    """KMS's NotFoundException for an alias that names no key (moto: HTTP 500 in
    CreateGrant, ListGrants, RevokeGrant and others)."""
    alias = self.get_alias_name(key_id)
    if alias.startswith("alias/") and self.get_key_id_from_alias(alias) is None:
        raise NotFoundException(
            f"Alias {arn(self.region_name, 'kms', self.account_id, alias)} is not found.")
    raw_id: str = original(KmsBackend, "any_id_to_key_id")(self, key_id)
    return raw_id


def _statements(policy: str) -> list[dict[str, Any]]:
    try:
        statements = json.loads(policy).get("Statement", [])
    except (ValueError, AttributeError):
        return []
    return statements if isinstance(statements, list) else [statements]


def _allows(statement: dict[str, Any], account_id: str, action: str) -> bool:
    if statement.get("Effect") != "Allow":
        return False
    principal = statement.get("Principal")
    principals = [principal] if isinstance(principal, str) else _as_list(
        (principal or {}).get("AWS"))
    return (any(_names_account(p, account_id) for p in principals)
            and any(action_matches(pattern, action)
                    for pattern in _as_list(statement.get("Action"))))


def _names_account(principal: str, account_id: str) -> bool:
    return principal in ("*", account_id) or bool(
        re.match(rf"arn:{ARN_PARTITION}:(iam|sts)::{account_id}:", principal))


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]
