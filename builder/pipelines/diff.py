"""`builder diff`: what changed between two AMIs of a comp — packages added, removed,
upgraded and downgraded (from each bake's packages.json), and the bake inputs that
changed (from each bake's fingerprint.json): template, vars, files by path, vault files,
base image.

Each AMI's build folder is found by its `builder:build-id` tag under
`.builder/builds/<app>/*/<comp>/` (a promoted copy keeps its original's build id and
its original was baked in another env). An AMI without a manifest there (baked on
another machine, or before builder recorded packages) is an InputError (exit 2).
"""

from __future__ import annotations

import glob
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.aws import fleet
from builder.aws import images as amis
from builder.aws.calls import runs
from builder.aws.session import EnvAws
from builder.bake.packages import MANIFEST, PackageChange, load_manifest, package_changes
from builder.errors import InputError
from builder.output import table
from builder.project import Project

_CHANGE_ORDER = ("added", "removed", "upgraded", "downgraded")


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
        return {kind: sum(1 for c in self.packages if c.change == kind)
                for kind in _CHANGE_ORDER}

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


@dataclass(frozen=True)
class BuildRecord:
    """One AMI's build folder: its packages and fingerprint inputs."""

    ami_id: str
    folder: Path

    def packages_path(self) -> Path:
        return self.folder / MANIFEST

    def inputs(self) -> Mapping[str, Any]:
        """The fingerprint inputs the bake saved (empty when unreadable)."""
        try:
            saved = json.loads((self.folder / "fingerprint.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        inputs = saved.get("inputs") if isinstance(saved, dict) else None
        return inputs if isinstance(inputs, dict) else {}


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
    records = [_record(project, found, ami_id) for ami_id in (before_id, after_id)]
    return compare(records[0], records[1])


def compare(before: BuildRecord, after: BuildRecord) -> DiffResult:
    """The packages and inputs that differ between two build records."""
    for record in (before, after):
        if not record.packages_path().is_file():
            raise InputError(f"{record.ami_id}: no package manifest in {record.folder} "
                             "(baked before builder recorded packages); bake it again to "
                             "diff it")
    changes = package_changes(load_manifest(before.packages_path()),
                              load_manifest(after.packages_path()))
    return DiffResult(before.ami_id, after.ami_id, tuple(changes),
                      tuple(input_changes(before.inputs(), after.inputs())))


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


def _record(project: Project, found: Mapping[str, amis.Image], ami_id: str) -> BuildRecord:
    image = found.get(ami_id)
    if image is None:
        raise InputError(f"{ami_id}: no such AMI")
    combo = amis.combo_of(image)
    build_id = image.tags.get(amis.TAG_BUILD_ID, "")
    if combo is None or not build_id:
        raise InputError(f"{ami_id}: not made by builder (no builder:build-id tag)")
    folder = build_folder(project, image)
    if folder is None:
        raise InputError(f"{ami_id}: its build {build_id} is not in "
                         f"{project.layout.state_dir / 'builds' / combo.app} (baked on "
                         "another machine?): no package manifest to diff")
    return BuildRecord(ami_id, folder)


def build_folder(project: Project, image: amis.Image) -> Path | None:
    """The folder of the bake that made `image` (or the original of a promoted copy,
    baked in another env), when it ran from this root."""
    combo = amis.combo_of(image)
    build_id = image.tags.get(amis.TAG_BUILD_ID, "")
    # Tag values are anyone's: each must be one plain folder name.
    if combo is None or not all(part and "/" not in part and part not in (".", "..")
                                for part in (combo.app, combo.env, combo.comp, build_id)):
        return None
    builds = project.layout.state_dir / "builds" / combo.app
    baked_here = builds / combo.env / combo.comp / build_id
    if baked_here.is_dir():
        return baked_here
    return next(iter(sorted(builds.glob(f"*/{glob.escape(combo.comp)}/{glob.escape(build_id)}"))),
                None)
