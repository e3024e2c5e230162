"""`builder local up --enforce-iam`: the generated policies attached to each env's role
in the emulator, and the emulator's IAM enforcement switched on (see
builder.local.emulator.iam for what it checks).

Resources are made with enforcement paused: they stand in for the user's Terraform,
which runs with its own, wider permissions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from builder.aws.session import LOCAL_ACCESS_KEY, LOCAL_SECRET_KEY
from builder.local import control

if TYPE_CHECKING:
    from builder.aws.policy import PolicySet
    from builder.project import Project

# `builder local up` with enforcement by default (tests run the local suite with it).
ENFORCE_IAM_ENV = "BUILDER_LOCAL_ENFORCE_IAM"


@dataclass(frozen=True)
class Enforcement:
    """What `up --enforce-iam` installed: the roles and how many actions each may use."""

    ci_user_arn: str
    roles: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"ci_user_arn": self.ci_user_arn, "roles": self.roles}

    def to_text(self) -> str:
        return (f"IAM enforced: {self.ci_user_arn} assumes "
                + ", ".join(f"{arn} ({n} actions)" for arn, n in sorted(self.roles.items())))


def is_enforced(endpoint: str) -> bool:
    """Whether the emulator at `endpoint` judges calls by IAM policies."""
    return bool(control.call(endpoint, "iam").get("enforced"))


@contextmanager
def paused(endpoint: str) -> Iterator[bool]:
    """Enforcement off for the block (making resources), back on after if it was on;
    yields whether it was."""
    was = is_enforced(endpoint)
    if was:
        control.call(endpoint, "iam", {"on": False})
    try:
        yield was
    finally:
        if was:
            control.call(endpoint, "iam", {"on": True})


def enforce(project: Project, *, without: Collection[str] = ()) -> Enforcement:
    """Attach `builder iam-policy`'s policies (every command, every app) to each env's
    role, let the local CI user assume them, and switch enforcement on.

    `without`: actions taken out of every role's policy (to show what a missing one does).
    """
    from builder.pipelines.access import iam_policy

    endpoint = project.aws.local_endpoint
    assert endpoint is not None, "a local project"
    ci_user = str(control.call(endpoint, "iam")["ci_user_arn"])
    policies: PolicySet = iam_policy(project, ci_principal=ci_user)
    roles: list[dict[str, Any]] = [
        {"arn": account.role_arn, "trust": account.trust_document(),
         "policy": _without(account.document(), without)} for account in policies.accounts]
    control.call(endpoint, "iam", {
        "on": True, "access_key": LOCAL_ACCESS_KEY, "secret_key": LOCAL_SECRET_KEY,
        "ci_policy": policies.ci_document(), "roles": roles})
    return Enforcement(ci_user, {
        str(role["arn"]): len({a for s in role["policy"]["Statement"] for a in s["Action"]})
        for role in roles})


def _without(document: dict[str, Any], actions: Collection[str]) -> dict[str, Any]:
    statements = []
    for statement in document["Statement"]:
        kept = [a for a in statement["Action"] if a not in actions]
        if kept:
            statements.append({**statement, "Action": kept})
    return {**document, "Statement": statements}
