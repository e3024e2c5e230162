"""`builder reap`: remove what crashed runs left behind, in every account and region the
infra repo's envs use, and on this host.

In AWS: builder instances, key pairs and security groups (tagged with a run id),
`building` AMIs and their snapshots (bakes and promotion copies that never completed),
Packer's temporary AMIs, and the launch/create-volume permissions and KMS grants a
promotion recorded on its source AMI. On this host: local build hosts and builder's
private temp folders. A run's leftovers go when its owning process (on this host) is
gone, or when it started longer ago than `older_than` (default: longer than any live
run holds them). A build host a failed bake kept for debugging (its instance, key pair,
security group, local build host and key file) is only listed until its kept-until
time, whatever its owner; then, or at once for `release_run`, it goes too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from builder import scratch
from builder.aws import AwsTarget, temporary
from builder.aws.calls import runs
from builder.bake import keep
from builder.errors import BuilderError, InputError
from builder.output import table
from builder.project import Project

# The longest a live run holds what it made: a bake's lock lease, a promotion's copy
# deadline plus its release.
DEFAULT_AGE = timedelta(hours=4)


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
    local_build_hosts: tuple[str, ...] = ()  # build hosts of dead bakes (local mode)
    temp_folders: tuple[Path, ...] = ()  # builder's private folders of dead runs
    kept_key_files: tuple[Path, ...] = ()  # the folders of expired kept hosts' keys
    kept_hosts: tuple[keep.KeptHost, ...] = ()  # kept for debugging, not yet expired
    release_run: str | None = None  # --run-id: that run's kept host goes now

    @property
    def kept_resources(self) -> list[temporary.KeptResource]:
        """The AWS resources of kept hosts left in place."""
        return [k for place in self.places for k in place.leftovers.kept]

    @property
    def release_run_unknown(self) -> bool:
        """--run-id named a run that kept nothing (still kept, or removed now)."""
        if self.release_run is None:
            return False
        removed = [i for ids in self.by_kind().values() for i in ids]
        return (not any(self.release_run in item for item in removed)
                and not any(k.run_id == self.release_run for k in self.kept_hosts))

    def by_kind(self) -> dict[str, list[str]]:
        """Every leftover by kind; AWS ones as `<account>/<region>/<id>`."""
        kinds: dict[str, list[str]] = {}
        for place in self.places:
            for kind, ids in place.leftovers.by_kind().items():
                kinds.setdefault(kind, []).extend(
                    f"{place.account}/{place.region}/{i}" for i in ids)
        kinds["local_build_hosts"] = list(self.local_build_hosts)
        kinds["temp_folders"] = [str(f) for f in self.temp_folders]
        kinds["kept_key_files"] = [str(f) for f in self.kept_key_files]
        return kinds

    exit_code = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "removed": [{"account": p.account, "region": p.region,
                         **p.leftovers.by_kind()} for p in self.places],
            "by_kind": self.by_kind(),
            "kept": {"hosts": [k.to_json() for k in self.kept_hosts],
                     "resources": [k.to_json() for k in self.kept_resources]},
            "skipped": list(self.skipped),
        }

    def to_text(self) -> str:
        rows = [(kind, len(ids), ", ".join(ids)) for kind, ids in self.by_kind().items() if ids]
        if rows:
            verb = "would remove" if self.dry_run else "removed"
            text = f"{verb}:\n" + table(("kind", "count", "what"), rows)
        else:
            text = "nothing to reap"
        kept = _kept_rows(self.kept_hosts, self.kept_resources)
        if kept:
            text += ("\nkept for debugging (`builder reap --run-id RUN` removes one now):\n"
                     + table(("run", "until", "what"), kept))
        if self.release_run_unknown:
            text += f"\n--run-id {self.release_run}: no build host kept by that run"
        for where in self.skipped:
            text += f"\nskipped {where}: its config has errors (builder validate)"
        return text


# Nothing builder made is older than its first release; more is a typo.
MAX_AGE = timedelta(days=3650)


def parse_age(text: str) -> timedelta:
    """`90m`, `2h`, `1d`."""
    seconds_per = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:]
    if unit not in seconds_per or not number.isascii() or not number.isdigit():
        raise InputError(f"--older-than {text!r:.30}: expected a number and s, m, h or d "
                         "(e.g. 2h)")
    if len(number) > 12 or int(number) * seconds_per[unit] > MAX_AGE.total_seconds():
        raise InputError(f"--older-than {text!r:.30}: at most {MAX_AGE.days} days")
    return timedelta(seconds=int(number) * seconds_per[unit])


def _kept_rows(hosts: Sequence[keep.KeptHost], resources: Sequence[temporary.KeptResource]
               ) -> list[tuple[str, str, str]]:
    rows = [(h.run_id, h.until, f"{h.combo}: {h.ssh_command}") for h in hosts]
    by_run: dict[tuple[str, str], list[str]] = {}
    for resource in resources:
        by_run.setdefault((resource.run_id, resource.until), []).append(resource.id)
    rows += [(run, until, ", ".join(ids)) for (run, until), ids in by_run.items()]
    return rows


_RUN_ID = re.compile(r"[0-9a-f]{12}")


def check_run_id(text: str) -> str:
    """A run id as bakes make them (12 hex digits)."""
    if not _RUN_ID.fullmatch(text):
        raise InputError(f"--run-id {text!r:.30}: expected a bake's run id (12 hex digits, "
                         "as `builder reap --dry-run` lists them)")
    return text


@runs("reap")
def reap(project: Project, older_than: timedelta = DEFAULT_AGE, *,
         dry_run: bool = False, release_run: str | None = None) -> ReapReport:
    """Remove what crashed runs left (instances, key pairs, security groups, incomplete
    AMIs and their snapshots, Packer's temporary AMIs, promotions' shares and grants,
    local build hosts, private temp folders): whose owning process on this host is gone,
    or older than `older_than`, in every account and region the envs use. Build hosts
    kept for debugging go after their kept-until time, or now for `release_run`."""
    targets, apps, skipped = _targets(project)
    now = datetime.now(UTC)
    cutoff = now - older_than
    build_hosts: list[str] = []
    if project.local_mode is not None:
        build_hosts = project.local_mode.reap_build_hosts(
            project.layout, now=now, release_run=release_run, dry_run=dry_run)
    folders = scratch.leftovers(cutoff)
    if not dry_run:
        scratch.remove(folders)
    places = []
    for target in targets:
        env_aws = project.aws.env(target)
        leftovers = temporary.find_leftovers(env_aws.client("ec2"), cutoff, apps, now=now,
                                             release_run=release_run)
        if leftovers.empty and not leftovers.kept:
            continue
        if not dry_run and not leftovers.empty:
            temporary.remove_leftovers(env_aws, leftovers)
        places.append(ReapedPlace(target.account_id, target.region, leftovers))
    # The keys last: a host whose removal failed above stays reachable.
    recorded = keep.recorded(project.layout.state_dir)
    due = [k for k in recorded if k.due(now, release_run)]
    if not dry_run:
        for kept in due:
            keep.forget(kept)
    return ReapReport(tuple(places), tuple(skipped), dry_run, tuple(build_hosts),
                      tuple(folders), tuple(k.folder for k in due),
                      tuple(k for k in recorded if k not in due), release_run)


def _targets(project: Project) -> tuple[list[AwsTarget], list[str], list[str]]:
    """Every account and region a comp bakes in (a comp's own vars file may move it),
    the apps, and what could not be read."""
    targets: dict[AwsTarget, None] = {}
    skipped: list[str] = []
    apps = list(project.config.apps())
    for app in apps:
        for env in project.config.envs(app):
            try:
                comps = project.config.components(app, env)
            except BuilderError:
                skipped.append(f"{app}/{env}")
                continue
            for comp in comps:
                try:
                    settings = project.resolve(app, env, comp).settings
                    for region in settings.aws_regions:  # a bake's copies are in each
                        targets[AwsTarget.of(settings.in_region(region))] = None
                except BuilderError:
                    skipped.append(f"{app}/{env}/{comp}")
    return list(targets), apps, skipped
