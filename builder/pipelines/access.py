"""What builder needs from AWS IAM, per env account: `builder iam-policy` writes the
policies from the calls table (builder/aws/calls.py); the combos in scope decide the
names they are scoped to."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from builder.aws import AwsTarget, EnvAws, calls, translate
from builder.aws.calls import runs
from builder.aws.partition import arn
from builder.aws.policy import AccountPolicy, PolicySet, build, statements
from builder.config.layers import ResolvedVars
from builder.config.models import Settings
from builder.errors import AwsError, InputError, Problem, ValidationFailed
from builder.output import table
from builder.project import Project

if TYPE_CHECKING:
    from mypy_boto3_iam.type_defs import ContextEntryTypeDef

# `--for` choices: the commands a user runs against real AWS, and all of them.
FOR_CHOICES = (*calls.POLICY_STEPS, "all")


def policy_steps(for_: Sequence[str]) -> tuple[str, ...]:
    """The steps `--for` names ("all": every step a user runs against AWS)."""
    chosen: list[str] = []
    for name in for_ or ("all",):
        if name not in FOR_CHOICES:
            raise InputError(f"--for {name}: one of {', '.join(FOR_CHOICES)}")
        for step in calls.POLICY_STEPS if name == "all" else (name,):
            if step not in chosen:
                chosen.append(step)
    return tuple(chosen)


def in_scope(project: Project, app: str | None, env: str | None
             ) -> tuple[list[ResolvedVars], list[ResolvedVars]]:
    """The combos in scope, and every combo of their apps (promotion links envs)."""
    everything: list[ResolvedVars] = []
    problems: list[Problem] = []
    for combo in project.config.combos(app):
        if isinstance(combo, Problem):
            problems.append(combo)
            continue
        everything.append(project.resolve(combo.app, combo.env, combo.comp))
    if problems:
        raise ValidationFailed(problems)
    chosen = [r for r in everything if env is None or r.combo.env == env]
    if not chosen:
        raise InputError(f"no combos in scope ({app or 'all apps'}"
                         f"{f', env {env}' if env else ''})")
    return chosen, everything


def iam_policy(project: Project, app: str | None = None, env: str | None = None, *,
               for_: Sequence[str] = ("all",), terraform: bool = False,
               ci_principal: str | None = None) -> PolicySet:
    """The policies each env account's builder role needs for the chosen commands."""
    chosen, everything = in_scope(project, app, env)
    return build(chosen, everything, policy_steps(for_), ci_principal=ci_principal,
                 terraform_format=terraform)


@dataclass(frozen=True)
class Check:
    """One check of one env account: ok, failed, or skipped (with why)."""

    name: str
    outcome: str  # "ok", "failed", "skipped"
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"check": self.name, "outcome": self.outcome, "detail": self.detail}


@dataclass(frozen=True)
class AccountDoctor:
    """`doctor`'s checks of one env account (shared by every env in it)."""

    account: str
    role_arn: str
    envs: tuple[str, ...]
    checks: tuple[Check, ...]
    missing: tuple[str, ...] = ()
    to_add: tuple[dict[str, Any], ...] = ()

    @property
    def ok(self) -> bool:
        return all(check.outcome != "failed" for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"account": self.account, "role_arn": self.role_arn, "envs": list(self.envs),
                "ok": self.ok, "checks": [check.to_json() for check in self.checks],
                "missing_actions": list(self.missing),
                "statements_to_add": list(self.to_add)}


@dataclass(frozen=True)
class DoctorReport:
    """`builder doctor`: a table of env account by check; exit 2 when any check failed."""

    accounts: tuple[AccountDoctor, ...]

    @property
    def ok(self) -> bool:
        return all(account.ok for account in self.accounts)

    @property
    def exit_code(self) -> int:
        """2 when a check failed: the config or the account's set-up needs fixing."""
        return 0 if self.ok else 2

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "accounts": [account.to_json() for account in self.accounts]}

    def to_text(self) -> str:
        names = [check.name for check in self.accounts[0].checks] if self.accounts else []
        rows = [(a.account, ", ".join(a.envs),
                 *(check.outcome for check in a.checks)) for a in self.accounts]
        lines = [table(("account", "envs", *names), rows)]
        for account in self.accounts:
            for check in account.checks:
                if check.outcome != "ok" and check.detail:
                    lines.append(f"{account.account} {check.name}: {check.outcome}: "
                                 f"{check.detail}")
            if account.to_add:
                lines.append(f"{account.account}: add to {account.role_arn}'s policy:")
                lines.append(json.dumps(list(account.to_add), indent=2))
        lines.append("all checks passed" if self.ok else "some checks failed")
        return "\n".join(lines)


@runs("doctor")
def doctor(project: Project, app: str | None = None, env: str | None = None) -> DoctorReport:
    """Per env account: the credentials work and are the account's (sts:GetCallerIdentity,
    which assumes the role first), the role is the one builder assumes, and its policies
    allow every action `builder iam-policy` lists (iam:SimulatePrincipalPolicy, when the
    role may call it). At most three calls per account."""
    chosen, everything = in_scope(project, app, env)
    policies = build(chosen, everything, calls.POLICY_STEPS,
                     role_for=lambda settings: _role(project, settings))
    members = {(r.settings.aws_account_id, _role(project, r.settings)): r for r in chosen}
    return DoctorReport(tuple(_examine(project.env_aws(members[(a.account, a.role_arn)]), a)
                              for a in policies.accounts))


def _role(project: Project, settings: Settings) -> str:
    """The role builder assumes in the env (the account itself when it assumes none)."""
    return (project.aws.role_for(AwsTarget.of(settings))
            or arn(settings.aws_region, "iam", settings.aws_account_id, "root",
                   in_region=False))


def _examine(env_aws: EnvAws, account: AccountPolicy) -> AccountDoctor:
    assumes = account.role_arn.split(":")[5].startswith("role/")
    try:
        identity = env_aws.aws.caller_identity(env_aws)
    except AwsError as exc:
        role_failed = "AssumeRole" in exc.message
        return AccountDoctor(account.account, account.role_arn, account.envs, (
            Check("credentials", "skipped" if role_failed else "failed",
                  "" if role_failed else exc.message),
            Check("role", "failed" if role_failed else "skipped",
                  exc.message if role_failed else ""),
            Check("policy", "skipped", "no credentials")))
    arn = str(identity.get("Arn", ""))
    credentials = (Check("credentials", "ok", arn) if identity.get("Account") == account.account
                   else Check("credentials", "failed", f"the credentials are {arn}, in account "
                              f"{identity.get('Account')}, not aws_account_id "
                              f"{account.account}"))
    role_name = account.role_arn.rsplit("/", 1)[-1]
    if not assumes:
        role = Check("role", "skipped", "no aws_role_arn: builder uses the credentials as "
                     "they are")
    elif f":assumed-role/{role_name}/" in arn:
        role = Check("role", "ok", account.role_arn)
    else:
        role = Check("role", "failed", f"expected {account.role_arn} assumed, got {arn}")
    if credentials.outcome != "ok" or not assumes:
        return AccountDoctor(account.account, account.role_arn, account.envs,
                             (credentials, role, Check("policy", "skipped",
                                                       "nothing to simulate")))
    policy, missing = _simulate(env_aws, account)
    to_add = tuple(statement for statement in statements(account.grants)
                   if set(statement["Action"]) & set(missing))
    to_add = tuple({**s, "Action": sorted(set(s["Action"]) & set(missing))} for s in to_add)
    return AccountDoctor(account.account, account.role_arn, account.envs,
                         (credentials, role, policy), tuple(missing), to_add)


def _simulate(env_aws: EnvAws, account: AccountPolicy) -> tuple[Check, list[str]]:
    """One SimulatePrincipalPolicy call over every action, against the resources the
    generated policy scopes it to and with its conditions' keys set to what they expect
    (AWS would judge an action scoped to ARNs as denied on `*`)."""
    actions = sorted(account.actions)
    resources: dict[str, set[str]] = {}
    for grant in account.grants:
        resources.setdefault(grant.action, set()).update(grant.resources)
    try:
        with translate("iam:SimulatePrincipalPolicy"):
            reply = env_aws.client("iam").simulate_principal_policy(
                PolicySourceArn=account.role_arn, ActionNames=actions, MaxItems=1000,
                ResourceArns=sorted({r for found in resources.values() for r in found}),
                ContextEntries=_context(account))
    except AwsError as exc:
        if exc.code in ("AccessDenied", "AccessDeniedException"):
            return Check("policy", "skipped", "the role may not call "
                         "iam:SimulatePrincipalPolicy on itself"), []
        raise
    allowed = set()
    for result in reply.get("EvaluationResults", []):
        action = str(result["EvalActionName"])
        wanted = resources.get(action, set())
        if result.get("EvalDecision") == "allowed" or any(
                r.get("EvalResourceDecision") == "allowed" and r.get("EvalResourceName") in wanted
                for r in result.get("ResourceSpecificResults", [])):
            allowed.add(action)
    missing = [action for action in actions if action not in allowed]
    if missing:
        return Check("policy", "failed", f"{len(missing)} of {len(actions)} actions not "
                     f"allowed: {', '.join(missing)}"), missing
    return Check("policy", "ok", f"{len(actions)} actions allowed"), []


def _context(account: AccountPolicy) -> list[ContextEntryTypeDef]:
    """Every condition key of the policy, set the way its condition wants (a tag that
    must exist gets a value)."""
    values: dict[str, set[str]] = {}
    for grant in account.grants:
        for test, variable, expected in grant.condition:
            values.setdefault(variable, set()).update(
                ["builder"] if test == "Null" else expected)
    return [{"ContextKeyName": name, "ContextKeyValues": sorted(found),
             "ContextKeyType": "stringList"} for name, found in sorted(values.items())]
