"""IAM policy documents made from the calls table, scoped to what the config resolves to.

Per env account (one role per account, the one builder assumes there):

- the role's permissions policy: every row of the chosen steps' calls, grouped into
  statements by resource and condition;
- its trust policy: the CI principal may assume it;
- the KMS key-policy statements promote needs: the source env's key lets the target
  env's role use it for the copy.

And the CI principal's own policy (sts:AssumeRole on every env role).

Where AWS takes a resource scope or condition, the statement has one: Describe and List
calls take none (so `*`); launch templates and Auto Scaling groups are scoped to the
env's account and region, not to names, because their ARNs carry ids AWS assigns
(`lt-…`) or names the user's Terraform and CodeDeploy's blue/green copies choose;
instances, key pairs and security groups a bake makes and removes are limited to those
tagged `builder:run-id`; AMIs builder deregisters or shares to those tagged with the
app; deployment groups, the lock table, the SSM parameter and the KMS keys by name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from builder.aws import calls
from builder.aws.calls import Call
from builder.aws.images import TAG_APP, TAG_RUN_ID
from builder.aws.locks import TABLE
from builder.aws.partition import ARN_PARTITION, arn, partition_of
from builder.config.layers import ResolvedVars
from builder.config.models import PromoteBy, Settings

VERSION = "2012-10-17"
# Describe/List/Get calls that AWS authorises only on "*".
_UNSCOPED = re.compile(r"^(ec2:Describe|autoscaling:Describe|kms:ListAliases$|"
                       r"sts:GetCallerIdentity$|ec2:CopyImage$|ssm:DescribeParameters$)")
_KEY_ARN = re.compile(rf"arn:{ARN_PARTITION}:kms:[\w-]+:\d{{12}}:key/.+")
# What deletes, shares, protects or deprecates an AMI must find the app's tag on it.
_TAG_GUARDED = frozenset({"ec2:DeregisterImage", "ec2:ModifyImageAttribute",
                          "ec2:EnableImageDeregistrationProtection",
                          "ec2:DisableImageDeregistrationProtection",
                          "ec2:EnableImageDeprecation"})

Condition = tuple[tuple[str, str, tuple[str, ...]], ...]  # (test, variable, values)


@dataclass(frozen=True)
class Grant:
    """One action on resources, maybe under a condition."""

    action: str
    resources: tuple[str, ...]
    condition: Condition = ()


@dataclass(frozen=True)
class AccountPolicy:
    """What one env account's builder role needs."""

    account: str
    role_arn: str
    regions: tuple[str, ...]
    envs: tuple[str, ...]
    grants: tuple[Grant, ...]
    reasons: Mapping[str, tuple[str, ...]]
    trusted: str
    kms_statements: tuple[dict[str, Any], ...] = ()

    @property
    def actions(self) -> frozenset[str]:
        return frozenset(grant.action for grant in self.grants)

    def document(self) -> dict[str, Any]:
        return {"Version": VERSION, "Statement": statements(self.grants)}

    def trust_document(self) -> dict[str, Any]:
        return {"Version": VERSION, "Statement": [{
            "Sid": "BuilderCiAssumesRole", "Effect": "Allow",
            "Principal": {"AWS": self.trusted}, "Action": "sts:AssumeRole"}]}

    def to_json(self) -> dict[str, Any]:
        return {"account": self.account, "role_arn": self.role_arn,
                "regions": list(self.regions), "envs": list(self.envs),
                "policy": self.document(), "trust_policy": self.trust_document(),
                "kms_key_policy_statements": list(self.kms_statements),
                "reasons": {action: list(why) for action, why in sorted(self.reasons.items())}}


@dataclass(frozen=True)
class PolicySet:
    """`builder iam-policy`: the policies of every env account in scope."""

    steps: tuple[str, ...]
    accounts: tuple[AccountPolicy, ...]
    ci_principal: str
    terraform: bool = False
    exit_code: int = 0

    def ci_document(self) -> dict[str, Any]:
        return {"Version": VERSION, "Statement": [{
            "Sid": "BuilderAssumesEnvRoles", "Effect": "Allow", "Action": "sts:AssumeRole",
            "Resource": sorted({a.role_arn for a in self.accounts})}]}

    def to_json(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "ci_principal": self.ci_principal,
                "ci_policy": self.ci_document(),
                "accounts": [account.to_json() for account in self.accounts]}

    def to_text(self) -> str:
        if self.terraform:
            return terraform(self)
        return json.dumps(self.to_json(), indent=2)


def build(resolved: Sequence[ResolvedVars], every: Sequence[ResolvedVars], steps: Sequence[str],
          *, ci_principal: str | None = None, terraform_format: bool = False,
          role_for: Callable[[Settings], str] | None = None) -> PolicySet:
    """The policies for the combos in `resolved` (`every`: all combos of their apps, to
    know which env promotes from which); `role_for(settings)` names the env's role."""
    chosen = tuple(dict.fromkeys(name for step in steps for name in calls.expand(step)))
    # A multi-region env is granted in each of its regions.
    resolved = [r.in_region(region) for r in resolved for region in r.settings.aws_regions]
    # What only promote brings in (its release in the target env) applies only to envs
    # that promote from another.
    direct = {name for step in steps if step != "promote"
              for name in calls.expand(step) if name != "promote"}
    via_promote = frozenset(calls.expand("promote")) - direct - {"promote"}
    by_env = {(r.combo.app, r.combo.env): r.settings for r in every}
    # (app, env) → the combos that promote from it
    sources: dict[tuple[str, str], list[ResolvedVars]] = {}
    for r in every:
        if r.settings.promote_from:
            sources.setdefault((r.combo.app, r.settings.promote_from), []).append(r)
    groups: dict[tuple[str, str], list[ResolvedVars]] = {}
    role_of = role_for or _default_role
    for r in resolved:
        groups.setdefault((r.settings.aws_account_id, role_of(r.settings)), []).append(r)
    accounts = []
    for (account, role), members in sorted(groups.items()):
        grants: dict[Grant, None] = {}
        reasons: dict[str, list[str]] = {}
        for r in members:
            source = by_env.get((r.combo.app, r.settings.promote_from or ""))
            rebakes = source is not None and r.settings.promote_by == PromoteBy.REBAKE
            for call in _rows(chosen, via_promote,
                              promotes_from=rebakes or _copies_from(r.settings, source),
                              promoted_to=bool(sources.get((r.combo.app, r.combo.env))),
                              rebakes=rebakes):
                for grant in _grants(call, r, source, role):
                    grants.setdefault(grant)
                    why = reasons.setdefault(call.action, [])
                    if call.why not in why:
                        why.append(call.why)
        kms = tuple(_kms_statement(t, role_of(t.settings)) for r in members
                    for t in sources.get((r.combo.app, r.combo.env), ())
                    if r.settings.kms_key_id and "promote" in chosen
                    and _copies_from(t.settings, r.settings))
        accounts.append(AccountPolicy(
            account, role, tuple(sorted({r.settings.aws_region for r in members})),
            tuple(sorted({f"{r.combo.app}/{r.combo.env}" for r in members})),
            tuple(grants), {a: tuple(w) for a, w in reasons.items()},
            ci_principal or arn(members[0].settings.aws_region, "iam", account, "root",
                                in_region=False), tuple(_unique(kms))))
    return PolicySet(tuple(steps), tuple(accounts),
                     ci_principal or "the env account's own principals (pass --ci-principal)",
                     terraform_format)


def _copies_from(target: Settings, source: Settings | None) -> bool:
    """Whether promote copies into `target` from `source`: by copy, within a partition
    (promote refuses a copy across partitions)."""
    return (source is not None and target.promote_by == PromoteBy.COPY
            and partition_of(source.aws_region) == partition_of(target.aws_region))


def _default_role(settings: Settings) -> str:
    return settings.aws_role_arn or arn(settings.aws_region, "iam", settings.aws_account_id,
                                        "role/builder", in_region=False)


def _rows(steps: Sequence[str], via_promote: frozenset[str], *, promotes_from: bool,
          promoted_to: bool, rebakes: bool) -> Iterable[Call]:
    """The rows of the chosen steps that apply to an env: promote's target rows only
    where the env has promote_from (its bake only where it promotes by rebake), its
    source rows only where another env takes from it; local mode's rows never."""
    for step in steps:
        if step == "local" or (step in via_promote and not promotes_from):
            continue
        if step in via_promote and step in calls.expand("bake") and not rebakes:
            continue
        for call in calls.STEPS[step]:
            if step == "promote" and not (promoted_to if call.side == "source"
                                          else promotes_from and not rebakes):
                continue  # a rebake's target copies nothing: it bakes
            yield call


def _applies(call: Call, r: ResolvedVars) -> bool:
    """A row with `when` applies only where that var (or setting) is set."""
    if not call.when:
        return True
    return bool(getattr(r.settings, call.when, None) or r.values.get(call.when))


def _grants(call: Call, r: ResolvedVars, source: Settings | None, role: str) -> list[Grant]:
    if not _applies(call, r):
        return []
    s = r.settings
    region, account = s.aws_region, s.aws_account_id
    partition = partition_of(region)
    action = call.action
    if _UNSCOPED.match(action) or call.on == calls.ANY:
        return [Grant(action, ("*",))]
    ec2 = f"arn:{partition}:ec2:{region}"
    image, snapshot = f"{ec2}::image/*", f"{ec2}::snapshot/*"
    on = call.on
    if on == calls.IMAGE:
        return [Grant(action, (image,))]
    if on == calls.BUILDER_IMAGE:
        if action in _TAG_GUARDED:
            return [Grant(action, (image,), (("StringEquals", f"aws:ResourceTag/{TAG_APP}",
                                              (r.combo.app,)),))]
        return [Grant(action, (image, snapshot))]
    if on == calls.SNAPSHOT:
        return [Grant(action, (snapshot,))]
    own = f"{ec2}:{account}"
    if on == calls.RUN_NEW:
        resources = (f"{own}:key-pair/*", f"{own}:security-group/*", f"{own}:vpc/*")
        if action == "ec2:CreateTags":
            return [Grant(action, resources[:2], (
                ("StringEquals", "ec2:CreateAction", ("CreateSecurityGroup", "ImportKeyPair")),))]
        return [Grant(action, resources, (("Null", f"aws:RequestTag/{TAG_RUN_ID}",
                                           ("false",)),))]
    run_tagged = (("Null", f"aws:ResourceTag/{TAG_RUN_ID}", ("false",)),)
    if on == calls.RUN_TAGGED:
        return [Grant(action, (f"{own}:instance/*", f"{own}:volume/*", f"{own}:key-pair/*",
                               f"{own}:security-group/*"), run_tagged)]
    if on == calls.RUN_LAUNCHED:
        return [Grant(action, (f"{own}:instance/*", f"{own}:volume/*"), (
            ("StringEquals", "ec2:CreateAction", ("RunInstances",)),))]
    if on == calls.PACKER_LAUNCH:
        # What the launch makes must carry the run id; what it uses may be anything the
        # template names (base image, subnet, the bake's key pair and group).
        return [Grant(action, (f"{own}:instance/*", f"{own}:volume/*"), (
                    ("Null", f"aws:RequestTag/{TAG_RUN_ID}", ("false",)),)),
                Grant(action, (image, f"{own}:subnet/*", f"{own}:security-group/*",
                               f"{own}:key-pair/*", f"{own}:network-interface/*"))]
    if on == calls.PACKER_IMAGE:
        return [Grant(action, (f"{own}:instance/*",), run_tagged),
                Grant(action, (image, snapshot))]
    if on == calls.LAUNCH_TEMPLATE:
        template = f"{own}:launch-template/*"
        if action == "ec2:RunInstances":
            return [Grant(action, ("*",), (("ArnLike", "ec2:LaunchTemplate", (template,)),))]
        return [Grant(action, (template,))]
    if on == calls.ASG:
        return [Grant(action, (f"arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:*:"
                               "autoScalingGroupName/*",))]
    codedeploy = f"arn:{partition}:codedeploy:{region}:{account}"
    if on == calls.DEPLOYMENT_GROUP:
        return [Grant(action, (f"{codedeploy}:deploymentgroup:{s.codedeploy_application}/"
                               f"{s.codedeploy_deployment_group}",))]
    if on == calls.DEPLOYMENT_CONFIG:
        return [Grant(action, (f"{codedeploy}:deploymentconfig:*",))]
    if on == calls.APPLICATION:
        return [Grant(action, (f"{codedeploy}:application:{s.codedeploy_application}",))]
    if on == calls.LOCK_TABLE:
        return [Grant(action, (f"arn:{partition}:dynamodb:{region}:{account}:table/{TABLE}",))]
    if on == calls.KMS_KEY:
        return _kms_grants(action, s, aws_made=call.by == "aws")
    if on == calls.SOURCE_KMS_KEY:
        return _kms_grants(action, source, aws_made=True) if source else []
    if on in _PARAMETER_OF or on == calls.RECORDS:
        return _named_grants(action, on, r)
    profile = r.values.get("iam_instance_profile")
    if on == calls.INSTANCE_PROFILE:
        return [Grant(action, (f"arn:{partition}:iam::{account}:instance-profile/{profile}",))
                ] if profile else []
    if on == calls.PASS_ROLE:
        return [Grant(action, (f"arn:{partition}:iam::{account}:role/*",), (
            ("StringEquals", "iam:PassedToService", ("ec2.amazonaws.com",)),))] if profile else []
    if on == calls.SELF_ROLE:
        return [Grant(action, (role,))]
    raise ValueError(f"calls table: unknown resource kind {on!r} for {action}")


def _named_grants(action: str, on: str, r: ResolvedVars) -> list[Grant]:
    """An SSM parameter a key names; the records bucket's builder/<app>/ keys."""
    s = r.settings
    partition = partition_of(s.aws_region)
    if on == calls.RECORDS:
        bucket = s.records_bucket
        return [Grant(action, (f"arn:{partition}:s3:::{bucket}",
                               f"arn:{partition}:s3:::{bucket}/builder/{r.combo.app}/*"))
                ] if bucket else []
    name = _PARAMETER_OF[on](s)
    return [Grant(action, (f"arn:{partition}:ssm:{s.aws_region}:{s.aws_account_id}:"
                           f"parameter/{name.lstrip('/')}",))] if name else []


# The SSM parameter each kind names ("*": every one of the account and region).
_PARAMETER_OF: Mapping[str, Callable[[Settings], str | None]] = {
    calls.SSM_PARAMETER: lambda s: s.vault_password_ssm_parameter,
    calls.AMI_PARAMETER: lambda s: s.ami_ssm_parameter,
    calls.ANY_PARAMETER: lambda s: "*",
}


def _kms_grants(action: str, s: Settings, *, aws_made: bool) -> list[Grant]:
    """A key named by alias is matched by kms:ResourceAliases (key ARNs carry ids); the
    account's AWS-managed EBS key (no kms_key_id) needs no IAM permission."""
    key = s.kms_key
    partition = partition_of(s.aws_region)
    if not key:
        return []
    condition: Condition = ()
    if action == "kms:CreateGrant" and aws_made:
        condition = (("Bool", "kms:GrantIsForAWSResource", ("true",)),)
    if _KEY_ARN.fullmatch(key):
        return [Grant(action, (key,), condition)]
    alias = key.split(":", 5)[-1] if key.startswith("arn:") else key
    if alias.startswith("alias/"):
        return [Grant(action, (f"arn:{partition}:kms:{s.aws_region}:{s.aws_account_id}:key/*",),
                      (*condition, ("ForAnyValue:StringEquals", "kms:ResourceAliases",
                                    (alias,))))]
    return [Grant(action, (f"arn:{partition}:kms:{s.aws_region}:{s.aws_account_id}:key/{key}",),
                  condition)]


def _kms_statement(target: ResolvedVars, target_role: str) -> dict[str, Any]:
    """For the source env's key policy: the target env's role may use the key to copy."""
    return {"Sid": f"BuilderPromoteTo{_camel(target.combo.env)}", "Effect": "Allow",
            "Principal": {"AWS": target_role},
            "Action": ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey",
                       "kms:ReEncryptFrom"],
            "Resource": "*"}


def _unique(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for item in items:
        seen.setdefault(json.dumps(item, sort_keys=True), item)
    return list(seen.values())


def statements(grants: Iterable[Grant]) -> list[dict[str, Any]]:
    """Grants grouped by resources and condition, one statement per group."""
    grouped: dict[tuple[tuple[str, ...], Condition], set[str]] = {}
    for grant in grants:
        grouped.setdefault((grant.resources, grant.condition), set()).add(grant.action)
    # Same condition, same actions: one statement over all the resources.
    merged: dict[tuple[frozenset[str], Condition], list[str]] = {}
    for (resources, condition), actions in grouped.items():
        merged.setdefault((frozenset(actions), condition), []).extend(resources)
    result = []
    ordered = sorted(merged.items(), key=lambda item: (sorted(item[0][0]), item[0][1]))
    for index, ((action_set, condition), resource_list) in enumerate(ordered):
        unique = sorted(set(resource_list))
        statement: dict[str, Any] = {
            "Sid": f"Builder{index + 1}", "Effect": "Allow", "Action": sorted(action_set),
            "Resource": "*" if unique == ["*"] else unique}
        if condition:
            block: dict[str, dict[str, list[str]]] = {}
            for test, variable, values in condition:
                block.setdefault(test, {})[variable] = list(values)
            statement["Condition"] = block
        result.append(statement)
    return result


def terraform(policies: PolicySet) -> str:
    """`aws_iam_policy_document` data sources: per account its role policy, trust policy
    and KMS key-policy statements; and the CI principal's policy."""
    blocks = [_data_source("builder_ci", policies.ci_document()["Statement"])]
    for account in policies.accounts:
        name = f"builder_{account.account}_{_snake(account.role_arn.rsplit('/', 1)[-1])}"
        blocks.append(_data_source(name, account.document()["Statement"]))
        blocks.append(_data_source(f"{name}_trust", account.trust_document()["Statement"]))
        if account.kms_statements:
            blocks.append(_data_source(f"{name}_kms_key_policy", list(account.kms_statements)))
    return "\n\n".join(blocks) + "\n"


def _data_source(name: str, statement_list: Sequence[Mapping[str, Any]]) -> str:
    lines = [f'data "aws_iam_policy_document" "{name}" {{']
    for statement in statement_list:
        lines.append("  statement {")
        lines.append(f"    sid       = {json.dumps(statement['Sid'])}")
        lines.append(f"    effect    = {json.dumps(statement['Effect'])}")
        lines.append(f"    actions   = {json.dumps(_as_list(statement['Action']))}")
        if "Resource" in statement:
            lines.append(f"    resources = {json.dumps(_as_list(statement['Resource']))}")
        for kind, who in statement.get("Principal", {}).items():
            lines += ["    principals {", f"      type        = {json.dumps(kind)}",
                      f"      identifiers = {json.dumps(_as_list(who))}", "    }"]
        for test, variables in statement.get("Condition", {}).items():
            for variable, values in variables.items():
                lines += ["    condition {", f"      test     = {json.dumps(test)}",
                          f"      variable = {json.dumps(variable)}",
                          f"      values   = {json.dumps(_as_list(values))}", "    }"]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines)


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name))


def _snake(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()
