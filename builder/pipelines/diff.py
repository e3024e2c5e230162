"""`builder diff`: what changed between two AMIs of a comp — packages added, removed,
upgraded and downgraded (from each bake's packages.json), and the bake inputs that
changed (from each bake's fingerprint.json): template, vars, files by path, vault files,
base image.

Each AMI's record is its build folder, found by its `builder:build-id` tag under
`.builder/builds/<app>/*/<comp>/` (a promoted copy keeps its original's build id and
its original was baked in another env), or, when this machine did not bake it, the
records bucket its `builder:record` tag names (builder.records). An AMI without a
manifest in either (baked on another machine without records_bucket, or before builder
recorded packages) is an InputError (exit 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from builder.aws import fleet
from builder.aws import images as amis
from builder.aws.calls import runs
from builder.aws.session import EnvAws
from builder.bake.packages import PackageChange, count_changes, package_changes
from builder.errors import InputError
from builder.output import table
from builder.project import Project
from builder.records import BuildRecord, find


@dataclass(frozen=True)
class InputChange:
    """One bake input that differs (a value empty where the input is absent)."""

    part: str  # template | vars | files | vault | source_ami | ansible
    name: str  # the file's path for files and vault; the part's name otherwise
    before: str
    after: str

    def to_json(self) -> dict[str, str]:
        return {"part": self.part, "name": self.name, "before": self.before,
                "after": self.after}


@dataclass(frozen=True)
class DiffResult:
    """What changed from AMI `before` to AMI `after`."""

    before: str
    after: str
    packages: tuple[PackageChange, ...]
    inputs: tuple[InputChange, ...]

    exit_code = 0

    def counts(self) -> dict[str, int]:
        """Package changes per kind, every kind named."""
        return count_changes(self.packages)

    def to_json(self) -> dict[str, Any]:
        return {"before": self.before, "after": self.after, "counts": self.counts(),
                "packages": [c.to_json() for c in self.packages],
                "inputs": [c.to_json() for c in self.inputs]}

    def to_text(self) -> str:
        counts = ", ".join(f"{n} {kind}" for kind, n in self.counts().items())
        lines = [f"{self.before} -> {self.after}: packages {counts}"]
        if self.packages:
            lines.append(table(("package", "arch", "change", "before", "after"),
                               [(c.name, c.arch, c.change, c.before or "-", c.after or "-")
                                for c in self.packages]))
        if self.inputs:
            lines.append("inputs changed:")
            lines.append(table(("part", "name", "before", "after"),
                               [(c.part, c.name, _short(c.before), _short(c.after))
                                for c in self.inputs]))
        else:
            lines.append("inputs: unchanged")
        return "\n".join(lines)


def _short(value: str) -> str:
    """Digests shown by their first 12 characters; AMI ids and the rest whole."""
    return value[:12] if len(value) == 64 else (value or "-")


@runs("status")
def diff(project: Project, *, combo: tuple[str, str, str] | None = None,
         ami_ids: tuple[str, str] | None = None) -> DiffResult:
    """Diff two AMIs: `ami_ids` (before, after) of one env, or for `combo` (app, env,
    comp) what its launch template runs against the newest baked AMI."""
    if combo is not None:
        app, env, comp = combo
        env_aws = project.env_aws(project.resolve(app, env, comp))
        before_id, after_id = _running_and_newest(project, env_aws, app, env, comp)
    elif ami_ids is not None:
        before_id, after_id = ami_ids
        env_aws = _env_holding(project, ami_ids)
    else:
        raise InputError("builder diff: give two AMI ids, or APP ENV COMP")
    found = amis.images_by_id(env_aws.client("ec2"), [before_id, after_id])
    records = [_record(project, env_aws, found, ami_id) for ami_id in (before_id, after_id)]
    return compare(records[0], records[1])


def compare(before: BuildRecord, after: BuildRecord) -> DiffResult:
    """The packages and inputs that differ between two build records."""
    for record in (before, after):
        if record.packages is None:
            raise InputError(f"{record.ami_id}: no package manifest in {record.where} "
                             "(baked before builder recorded packages); bake it again to "
                             "diff it")
    changes = package_changes(list(before.packages or ()), list(after.packages or ()))
    return DiffResult(before.ami_id, after.ami_id, tuple(changes),
                      tuple(input_changes(before.inputs, after.inputs)))


def input_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[InputChange]:
    """The fingerprint inputs that differ: whole parts, then files and vault files by path."""
    changes = [InputChange(part, part, str(old.get(part, "")), str(new.get(part, "")))
               for part in ("template", "vars", "source_ami", "ansible")
               if old.get(part) != new.get(part)]
    for part in ("files", "vault"):
        before, after = old.get(part) or {}, new.get(part) or {}
        changes.extend(InputChange(part, name, str(before.get(name, "")),
                                   str(after.get(name, "")))
                       for name in sorted(set(before) | set(after))
                       if before.get(name) != after.get(name))
    return changes


def _running_and_newest(project: Project, env_aws: EnvAws, app: str, env: str,
                        comp: str) -> tuple[str, str]:
    resolved = project.resolve(app, env, comp)
    ec2 = env_aws.client("ec2")
    template = resolved.settings.launch_template_name
    running = fleet.default_image(ec2, template)
    if not running:
        raise InputError(f"{app}/{env}/{comp}: launch template {template} launches no AMI "
                         "yet; give two AMI ids")
    newest = next(iter(amis.newest_first(
        i for i in amis.images_of(ec2, resolved.combo) if i.status in amis.USABLE_STATUSES)),
        None)
    if newest is None:
        raise InputError(f"{app}/{env}/{comp}: no baked AMI")
    return running, newest.id


def _env_holding(project: Project, ami_ids: tuple[str, str]) -> EnvAws:
    """The first env (account and region) of the project that holds both AMIs."""
    seen: set[tuple[str, str]] = set()
    for app in project.config.apps():
        for env in project.config.envs(app):
            comps = project.config.components(app, env)
            if not comps:
                continue
            env_aws = project.env_aws(project.resolve(app, env, comps[0]))
            if (env_aws.account_id, env_aws.region) in seen:
                continue
            seen.add((env_aws.account_id, env_aws.region))
            if len(amis.images_by_id(env_aws.client("ec2"), ami_ids)) == len(set(ami_ids)):
                return env_aws
    raise InputError(f"{' and '.join(ami_ids)}: not found together in any env's account "
                     "and region (both AMIs must be of the same env)")


def _record(project: Project, env_aws: EnvAws, found: Mapping[str, amis.Image],
            ami_id: str) -> BuildRecord:
    image = found.get(ami_id)
    if image is None:
        raise InputError(f"{ami_id}: no such AMI")
    combo = amis.combo_of(image)
    build_id = image.tags.get(amis.TAG_BUILD_ID, "")
    if combo is None or not build_id:
        raise InputError(f"{ami_id}: not made by builder (no builder:build-id tag)")
    record = find(project, env_aws, image)
    if record is None:
        builds = project.layout.state_dir / "builds" / combo.app
        raise InputError(f"{ami_id}: its build {build_id} is not in {builds} and it has no "
                         f"{amis.TAG_RECORD} tag (baked on another machine without "
                         "records_bucket?): no package manifest to diff")
    return record
