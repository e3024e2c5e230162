"""`builder reap`: remove what crashed bakes left behind (builder instances, key pairs,
security groups), in every account and region the infra repo's envs use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from builder.aws import AwsTarget, temporary
from builder.errors import BuilderError, InputError
from builder.output import table
from builder.project import Project


@dataclass(frozen=True)
class ReapedPlace:
    """What was found (and removed) in one account and region."""

    account: str
    region: str
    leftovers: temporary.Leftovers


@dataclass(frozen=True)
class ReapReport:
    """What `reap` found and removed everywhere."""

    places: tuple[ReapedPlace, ...]
    skipped: tuple[str, ...]  # envs (or single comps) whose config could not be read
    dry_run: bool
    local_build_hosts: int = 0  # build hosts of dead bakes torn down (local mode)

    exit_code = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "removed": [{"account": p.account, "region": p.region,
                         "instances": list(p.leftovers.instances),
                         "security_groups": list(p.leftovers.security_groups),
                         "key_pairs": list(p.leftovers.key_pairs)} for p in self.places],
            "skipped": list(self.skipped),
            "local_build_hosts": self.local_build_hosts,
        }

    def to_text(self) -> str:
        rows = [(p.account, p.region, ", ".join(p.leftovers.instances) or "-",
                 ", ".join(p.leftovers.security_groups) or "-",
                 ", ".join(p.leftovers.key_pairs) or "-") for p in self.places]
        if rows:
            verb = "would remove" if self.dry_run else "removed"
            text = f"{verb}:\n" + table(
                ("account", "region", "instances", "security groups", "key pairs"), rows)
        else:
            text = "nothing to reap"
        if self.local_build_hosts:
            text += f"\ntore down {self.local_build_hosts} local build host(s) of dead bakes"
        for where in self.skipped:
            text += f"\nskipped {where}: its config has errors (builder validate)"
        return text


def parse_age(text: str) -> timedelta:
    """`90m`, `2h`, `1d`."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit():
        raise InputError(f"--older-than {text!r}: expected a number and s, m, h or d (e.g. 2h)")
    return timedelta(**{units[unit]: int(number)})


def reap(project: Project, older_than: timedelta, *, dry_run: bool = False) -> ReapReport:
    """Remove builder instances, key pairs and security groups older than `older_than`,
    in every account and region the envs use (and dead local build hosts)."""
    targets, skipped = _targets(project)
    build_hosts = 0
    if project.local_mode is not None and not dry_run:
        build_hosts = project.local_mode.reap_build_hosts(project.layout)
    cutoff = datetime.now(UTC) - older_than
    places = []
    for target in targets:
        ec2 = project.aws.env(target).client("ec2")
        leftovers = temporary.find_leftovers(ec2, cutoff)
        if leftovers.empty:
            continue
        if not dry_run:
            temporary.remove_leftovers(ec2, leftovers)
        places.append(ReapedPlace(target.account_id, target.region, leftovers))
    return ReapReport(tuple(places), tuple(skipped), dry_run, build_hosts)


def _targets(project: Project) -> tuple[list[AwsTarget], list[str]]:
    """Every account and region a comp bakes in (a comp's own vars file may move it),
    and what could not be read."""
    targets: dict[AwsTarget, None] = {}
    skipped: list[str] = []
    for app in project.config.apps():
        for env in project.config.envs(app):
            try:
                comps = project.config.components(app, env)
            except BuilderError:
                skipped.append(f"{app}/{env}")
                continue
            for comp in comps:
                try:
                    targets[AwsTarget.of(project.resolve(app, env, comp).settings)] = None
                except BuilderError:
                    skipped.append(f"{app}/{env}/{comp}")
    return list(targets), skipped
