"""`builder prune APP ENV COMP`: deregister a comp's old AMIs and delete their
snapshots, never one still in use.

Kept, each with the reasons shown: the newest `ami_keep` (or --keep) available ones,
anything pending, and every AMI that any version of the comp's launch template
launches, that the default or latest version of any launch template in the account
launches, that an Auto Scaling group launches or an instance runs, that a deployment
in progress involves, that an SSM parameter of the account names, or that is shared
with another account (a promotion may be copying it); and, when nothing else keeps
it, one an instance was launched from within `ami_keep_launched_days`. An AMI prune
deletes loses its deregistration protection first; one in use keeps it.
A dry run unless `yes`. A multi-region env is pruned region by region, the bake region
last, where an AMI whose copy another region keeps stays too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from builder.aws import EnvAws, codedeploy, fleet, parameters, sharing
from builder.aws import images as amis
from builder.aws.calls import runs
from builder.aws.images import Image
from builder.config.layers import ResolvedVars
from builder.config.models import Combo
from builder.errors import AwsError, InputError
from builder.output import ProgressFn, silent, table
from builder.project import Project
from builder.release import lock

if TYPE_CHECKING:
    from mypy_boto3_autoscaling.type_defs import LaunchTemplateSpecificationTypeDef
    from mypy_boto3_ec2 import EC2Client

# Every state an AMI can be listed in, but `deregistered`.
_STATES = ("pending", "available", "failed", "error", "invalid", "disabled", "transient")
_LOCK_MIN = 30.0  # far longer than deregistering a comp's AMIs takes
_MISSING_DEPLOYMENT_GROUP = ("DeploymentGroupDoesNotExistException",
                             "ApplicationDoesNotExistException")


@dataclass(frozen=True)
class PruneEntry:
    """One AMI of the comp: kept or not, why, and whether it was deleted."""

    image: Image
    keep: bool
    reasons: tuple[str, ...]
    why: str = ""  # the one reason the plan shows (empty: deleted)
    deleted: bool = False
    error: str = ""

    @property
    def action(self) -> str:
        if self.keep:
            return "keep"
        if self.error:
            return "failed"
        return "deleted" if self.deleted else "delete"

    def to_json(self) -> dict[str, Any]:
        return {"ami_id": self.image.id, "name": self.image.name, "state": self.image.state,
                "status": self.image.status or None,
                "created": self.image.created.isoformat(), "action": self.action,
                "why": self.why or None, "reasons": list(self.reasons),
                "protected": self.image.protected,
                "last_launched": _iso(self.image.last_launched),
                "deprecation_time": _iso(self.image.deprecation_time),
                "snapshots": list(self.image.snapshot_ids), "error": self.error or None}


@dataclass(frozen=True)
class PruneReport:
    """The prune plan (or what was done) for one comp."""

    combo: Combo
    account: str
    region: str
    keep_newest: int
    dry_run: bool
    entries: tuple[PruneEntry, ...]

    @property
    def failed(self) -> list[PruneEntry]:
        return [e for e in self.entries if e.error]

    @property
    def exit_code(self) -> int:
        """1 when an AMI could not be deregistered (the others were)."""
        return 1 if self.failed else 0

    def to_json(self) -> dict[str, Any]:
        return {"app": self.combo.app, "env": self.combo.env, "comp": self.combo.comp,
                "account": self.account, "region": self.region,
                "keep_newest": self.keep_newest, "dry_run": self.dry_run,
                "amis": [e.to_json() for e in self.entries]}

    def to_text(self) -> str:
        if not self.entries:
            return f"{self.combo}: no AMIs in {self.account} {self.region}"
        rows = [(e.image.id, e.image.name, e.image.created.strftime("%Y-%m-%d %H:%M"),
                 e.image.status or e.image.state, e.action,
                 e.error or _shown_why(e)) for e in self.entries]
        doomed = sum(1 for e in self.entries if not e.keep)
        if self.dry_run:
            tail = (f"dry run: {doomed} AMI(s) and their snapshots would go; --yes deletes them"
                    if doomed else "nothing to prune")
        else:
            tail = f"deleted {doomed - len(self.failed)}, failed {len(self.failed)}"
        return (f"{self.combo} ({self.account} {self.region}), keeping the newest "
                f"{self.keep_newest} and everything in use:\n"
                + table(("AMI", "name", "created", "status", "action", "why / error"), rows)
                + f"\n\n{tail}")


@runs("prune")
def prune(project: Project, app: str, env: str, comp: str, *, keep: int | None = None,
          yes: bool = False, break_lock: bool = False, lock_wait_s: float = 0,
          progress: ProgressFn = silent) -> PruneReport | PruneRegions:
    """Plan (and with `yes`, do) the removal of the comp's old AMIs and their snapshots.

    Keeps the newest `keep` (default ami_keep) and every AMI still in use. With `yes` it
    works under the combo's lock: no release or promotion of the comp picks an AMI while
    its neighbours are deregistered.
    """
    if keep is not None and keep < 1:
        raise InputError(f"--keep {keep}: keep at least 1 AMI")
    resolved = project.resolve(app, env, comp)

    def in_region(each: ResolvedVars, keep_also: Mapping[str, str]) -> PruneReport:
        env_aws = project.env_aws(each)
        if not yes:
            return _prune(env_aws, each, keep, yes=False, keep_also=keep_also)
        with lock.held(env_aws, each.combo, minutes=_LOCK_MIN, break_lock=break_lock,
                       wait_s=lock_wait_s, progress=progress):
            return _prune(env_aws, each, keep, yes=True, keep_also=keep_also)

    # A multi-region env: each region of its own, the bake region last, keeping the
    # AMIs whose copies stay elsewhere (a release there finds its copy through them).
    others = [in_region(resolved.in_region(region), {})
              for region in resolved.settings.other_regions]
    sources = {source.partition("/")[2]: f"its copy {e.image.id} stays in {report.region}"
               for report in others for e in report.entries
               if e.keep and (source := e.image.tags.get(amis.TAG_COPIED_FROM))}
    bake = in_region(resolved, sources)
    return PruneRegions((bake, *others)) if others else bake


@dataclass(frozen=True)
class PruneRegions:
    """The prune of a multi-region env's comp: one report per region, the bake region's
    first."""

    reports: tuple[PruneReport, ...]

    @property
    def exit_code(self) -> int:
        return max(report.exit_code for report in self.reports)

    def to_json(self) -> dict[str, Any]:
        return {"regions": [report.to_json() for report in self.reports]}

    def to_text(self) -> str:
        return "\n\n".join(report.to_text() for report in self.reports)


def _prune(env_aws: EnvAws, resolved: ResolvedVars, keep: int | None, *, yes: bool,
           keep_also: Mapping[str, str]) -> PruneReport:
    settings = resolved.settings
    keep_newest = keep if keep is not None else settings.ami_keep
    ec2 = env_aws.client("ec2")
    candidates = amis.images_of(ec2, resolved.combo, states=_STATES)
    reasons = _in_use(env_aws, resolved, candidates)
    in_use = {image_id: list(found) for image_id, found in reasons.items()}
    for image in candidates:
        if image.id in keep_also:
            reasons.setdefault(image.id, []).append(keep_also[image.id])
    # The newest that can launch: a copy or bake that ended failed, or one not complete
    # yet, takes no place of theirs.
    for image in [i for i in candidates if i.state == "available"
                  and i.status != amis.AmiStatus.BUILDING][:keep_newest]:
        reasons.setdefault(image.id, []).insert(0, f"one of the newest {keep_newest}")
    for image in candidates:
        if image.state == "pending":
            reasons.setdefault(image.id, []).append("pending (a bake or copy in progress)")
        elif image.status == amis.AmiStatus.BUILDING:
            reasons.setdefault(image.id, []).append(
                "incomplete (its bake or copy runs, or `builder reap` removes it)")
    now = datetime.now(UTC)
    for image in candidates:
        # A safety net for what builder can't see (a fleet elsewhere, a manual launch).
        launched = image.last_launched
        if (not reasons.get(image.id) and launched is not None
                and now - launched < timedelta(days=settings.ami_keep_launched_days)):
            reasons[image.id] = [_launched_text(now - launched)]
    entries = [PruneEntry(i, bool(reasons.get(i.id)), tuple(reasons.get(i.id, ())),
                          _why(i, in_use.get(i.id, []), reasons.get(i.id, [])))
               for i in candidates]
    if yes:
        entries = [e if e.keep else _delete(ec2, e) for e in entries]
    return PruneReport(resolved.combo, settings.aws_account_id, settings.aws_region,
                       keep_newest, not yes, tuple(entries))


def _why(image: Image, in_use: Sequence[str], reasons: Sequence[str]) -> str:
    """The one reason shown: what uses the AMI first (saying when it is protected too),
    else the first of the others."""
    if in_use:
        return f"protected and in use: {in_use[0]}" if image.protected else in_use[0]
    return reasons[0] if reasons else ""


def _shown_why(entry: PruneEntry) -> str:
    more = len(entry.reasons) - 1
    return (entry.why or "-") + (f" (+{more} more)" if more > 0 else "")


def _launched_text(ago: timedelta) -> str:
    days = ago.days
    return ("launched today" if days == 0 else
            f"launched {days} day{'s' if days > 1 else ''} ago")


def _iso(when: datetime | None) -> str | None:
    return when.isoformat(timespec="seconds") if when else None


def _delete(ec2: EC2Client, entry: PruneEntry) -> PruneEntry:
    image = entry.image
    try:
        if image.protected:  # nothing uses it any more: prune decided it goes
            amis.set_protection(ec2, image.id, False)
        amis.deregister(ec2, image)
    except AwsError as exc:
        return PruneEntry(image, False, entry.reasons, error=exc.message)
    return PruneEntry(image, False, entry.reasons, deleted=True)


def _in_use(env_aws: EnvAws, resolved: ResolvedVars, candidates: Sequence[Image]
            ) -> dict[str, list[str]]:
    """AMI id → why it must stay, for the candidates something refers to."""
    ids = {i.id for i in candidates}
    reasons: dict[str, list[str]] = {}

    def mark(image_id: str, reason: str) -> None:
        if image_id in ids and reason not in reasons.setdefault(image_id, []):
            reasons[image_id].append(reason)

    ec2 = env_aws.client("ec2")
    name = resolved.settings.launch_template_name
    for version in [*fleet.all_versions(ec2, name),
                    *fleet.every_template(ec2, ("$Default", "$Latest"))]:
        mark(version.image_id, f"launch template {version.template_name} version "
                               f"{version.number}" + (" (default)" if version.is_default else ""))
    asgs = fleet.every_asg(env_aws.client("autoscaling"))
    asg_images = _asg_images(env_aws, asgs)
    for asg, image_ids in asg_images.items():
        for image_id in image_ids:
            mark(image_id, f"Auto Scaling group {asg} launches it")
    asg_of_instance = {instance: asg.name for asg in asgs for instance in asg.instance_ids}
    for instance_id, image_id in fleet.instances_of(ec2, ids).items():
        owner = asg_of_instance.get(instance_id)
        mark(image_id, f"instance {instance_id} runs it"
                       + (f" (Auto Scaling group {owner})" if owner else ""))
    for deployment_id, involved in _active_deployments(env_aws, resolved, asg_images).items():
        for asg_name in involved:
            for image_id in asg_images.get(asg_name, ()):
                mark(image_id, f"deployment {deployment_id} in progress ({asg_name})")
    for image_id, names in parameters.ami_references(env_aws.client("ssm")).items():
        for parameter in names:
            mark(image_id, f"SSM {parameter}")
    for image in candidates:
        accounts = _shared_with(ec2, image.id)
        if accounts:
            mark(image.id, f"shared with {', '.join(accounts)}")
    return reasons


def _asg_images(env_aws: EnvAws, asgs: Sequence[fleet.AsgLaunchSpecs]) -> dict[str, set[str]]:
    """Every Auto Scaling group's AMIs: its launch templates' (each specification read
    once) and its launch configuration's."""
    ec2 = env_aws.client("ec2")
    launched: dict[tuple[str, str, str], str] = {}

    def image_of(spec: LaunchTemplateSpecificationTypeDef) -> str:
        key = (spec.get("LaunchTemplateId", ""), spec.get("LaunchTemplateName", ""),
               str(spec.get("Version") or "$Default"))
        if key not in launched:
            launched[key] = fleet.launched_image(ec2, spec)
        return launched[key]

    configurations = fleet.configuration_images(
        env_aws.client("autoscaling"), [asg.configuration for asg in asgs if asg.configuration])
    return {asg.name: ({image_of(spec) for spec in asg.templates}
                       | {configurations.get(asg.configuration, "")}) - {""}
            for asg in asgs}


def _active_deployments(env_aws: EnvAws, resolved: ResolvedVars,
                        asg_images: Mapping[str, set[str]]) -> dict[str, list[str]]:
    """Deployment id → the Auto Scaling groups it involves (the group's, and the copy a
    blue/green deployment names after itself), for the comp's deployments in progress."""
    settings = resolved.settings
    client = env_aws.client("codedeploy")
    try:
        active = codedeploy.active(client, settings.codedeploy_application,
                                   settings.codedeploy_deployment_group)
        group = codedeploy.group(client, settings.codedeploy_application,
                                 settings.codedeploy_deployment_group) if active else None
    except AwsError as exc:
        if exc.code in _MISSING_DEPLOYMENT_GROUP:
            return {}
        raise
    involved: dict[str, list[str]] = {}
    for deployment_id in active:
        copies = [name for name in asg_images if deployment_id in name]
        involved[deployment_id] = [*(group.asg_names if group else ()), *copies]
    return involved


def _shared_with(ec2: EC2Client, image_id: str) -> list[str]:
    return sorted(str(p.get("UserId") or p.get("Group") or p.get("OrganizationArn")
                      or p.get("OrganizationalUnitArn"))
                  for p in sharing.launch_permissions(ec2, image_id))
