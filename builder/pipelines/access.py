"""What builder needs from AWS IAM, per env account: `builder iam-policy` writes the
policies from the calls table (builder/aws/calls.py); the combos in scope decide the
names they are scoped to."""

from __future__ import annotations

from collections.abc import Sequence

from builder.aws import calls
from builder.aws.policy import PolicySet, build
from builder.config.layers import ResolvedVars
from builder.errors import InputError, Problem, ValidationFailed
from builder.project import Project

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
