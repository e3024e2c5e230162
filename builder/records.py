"""Build and release records, and what changed between the AMI that runs and a new one.

A bake keeps its record in its build folder under `.builder/builds/`; with
`records_bucket` set it also writes `result.json`, `fingerprint.json` and
`packages.json` to `s3://<bucket>/builder/<app>/<env>/<comp>/<ami-id>/` and tags the AMI
`builder:record` with that prefix (a promoted copy inherits the tag, so it points at its
original's record). Releases write their record under the released AMI's prefix. So
`diff`, `rebuild` and `release` can read an AMI's packages and bake inputs on any
machine: the local folder when this machine baked it, else the bucket.

`Changes` is the short summary `rebuild` and `release` print: package counts, the
upgraded packages and, when the base image changed, both base images with their dates.
It uses the manifest comparison of `builder.bake.packages` (the same one `diff` does).
"""

from __future__ import annotations

import contextlib
import glob
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.aws import EnvAws, storage
from builder.aws import images as amis
from builder.bake.packages import (
    MANIFEST,
    Package,
    PackageChange,
    count_changes,
    load_manifest,
    package_changes,
    parse_manifest,
)
from builder.config.models import Combo
from builder.errors import AwsError, BuilderError
from builder.project import Project

FINGERPRINT = "fingerprint.json"
RESULT = "result.json"
BUILD_FILES = (RESULT, FINGERPRINT, MANIFEST)
_UPGRADES_SHOWN = 20


def prefix(bucket: str, combo: Combo, ami_id: str) -> str:
    """Where an AMI's records live in the records bucket (ends with /)."""
    return f"s3://{bucket}/builder/{combo.app}/{combo.env}/{combo.comp}/{ami_id}/"


def upload_build(env_aws: EnvAws, bucket: str, combo: Combo, ami_id: str,
                 folder: Path) -> tuple[str, tuple[str, ...]]:
    """Copy a bake's record files to the bucket: the prefix and the objects written."""
    where = prefix(bucket, combo, ami_id)
    s3 = env_aws.client("s3")
    written: list[str] = []
    try:
        for name in BUILD_FILES:
            path = folder / name
            if path.is_file():
                storage.put(s3, where + name, path.read_bytes())
                written.append(where + name)
    except BaseException:
        with contextlib.suppress(AwsError):  # the put's error is the one to show
            remove(env_aws, written)
        raise
    return where, tuple(written)


def remove(env_aws: EnvAws, uris: Iterable[str]) -> None:
    """Remove written records (a bake that could not complete its AMI)."""
    s3 = env_aws.client("s3")
    for uri in uris:
        storage.delete(s3, uri)


def upload_release(env_aws: EnvAws, bucket: str, combo: Combo, ami_id: str, name: str,
                   text: str) -> str:
    """A release record next to the released AMI's build record; its URI."""
    uri = prefix(bucket, combo, ami_id) + "releases/" + name
    storage.put(env_aws.client("s3"), uri, text.encode())
    return uri


@dataclass(frozen=True)
class BuildRecord:
    """One AMI's bake record: its packages (None without a manifest) and fingerprint
    inputs (empty when unreadable); `where` is its folder or S3 prefix."""

    ami_id: str
    where: str
    packages: tuple[Package, ...] | None
    inputs: Mapping[str, Any]

    @classmethod
    def from_folder(cls, ami_id: str, folder: Path) -> BuildRecord:
        manifest = folder / MANIFEST
        found = tuple(load_manifest(manifest)) if manifest.is_file() else None
        return cls(ami_id, str(folder), found, _inputs(_read(folder / FINGERPRINT)))

    @classmethod
    def from_bucket(cls, ami_id: str, env_aws: EnvAws, where: str) -> BuildRecord:
        s3 = env_aws.client("s3")
        raw = storage.get(s3, where + MANIFEST)
        found = tuple(parse_manifest(raw)) if raw else None
        return cls(ami_id, where, found, _inputs(storage.get(s3, where + FINGERPRINT)))


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _inputs(raw: bytes | None) -> Mapping[str, Any]:
    try:
        saved = json.loads(raw) if raw else None
    except ValueError:
        return {}
    inputs = saved.get("inputs") if isinstance(saved, dict) else None
    return inputs if isinstance(inputs, dict) else {}


def build_folder(project: Project, image: amis.Image) -> Path | None:
    """The image's build folder on this machine, by its builder:build-id (a promoted
    copy keeps its original's, baked in another env)."""
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
    return next(iter(sorted(builds.glob(f"*/{glob.escape(combo.comp)}/"
                                        f"{glob.escape(build_id)}"))), None)


def find(project: Project, env_aws: EnvAws, image: amis.Image) -> BuildRecord | None:
    """An AMI's record: its build folder when this machine baked it, else the records
    bucket its builder:record tag names; None when neither is there."""
    folder = build_folder(project, image)
    if folder is not None and (folder / MANIFEST).is_file():
        return BuildRecord.from_folder(image.id, folder)
    where = image.tags.get(amis.TAG_RECORD, "")
    if where:
        return BuildRecord.from_bucket(image.id, _bucket_reader(project, where, env_aws),
                                       where)
    return BuildRecord.from_folder(image.id, folder) if folder is not None else None


def _bucket_reader(project: Project, where: str, fallback: EnvAws) -> EnvAws:
    """The env whose records_bucket holds `where` (a promoted copy's record is in its
    source env's account): the env the prefix names, else `fallback`."""
    bucket, key = storage.split_uri(where)
    parts = key.split("/")
    if len(parts) >= 4 and parts[0] == "builder":
        try:
            resolved = project.resolve(parts[1], parts[2], parts[3], check_vault_files=False)
        except BuilderError:  # an app, env or comp this root no longer has
            return fallback
        if resolved.settings.records_bucket == bucket:
            return project.env_aws(resolved)
    return fallback


# -- changes vs what runs --------------------------------------------------------------

@dataclass(frozen=True)
class BaseImage:
    """A base image and when it was made ("" when this account can't see it)."""

    id: str
    created: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "created": self.created}

    def __str__(self) -> str:
        return f"{self.id} ({self.created or 'date unknown'})"


@dataclass(frozen=True)
class Changes:
    """What a new AMI changes against the one the launch template runs: package counts
    (None when a package manifest is missing: `note` says why), the upgraded packages,
    and both base images when the base image changed."""

    running: str
    new: str  # "" in a plan: the bake has not run
    counts: Mapping[str, int] | None
    upgraded: tuple[PackageChange, ...] = ()
    base_before: BaseImage | None = None
    base_after: BaseImage | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"running": self.running or None, "new": self.new or None,
                "counts": dict(self.counts) if self.counts is not None else None,
                "upgraded": [c.to_json() for c in self.upgraded],
                "base_image": {"before": self.base_before.to_json(),
                               "after": self.base_after.to_json()}
                if self.base_before and self.base_after else None,
                "note": self.note or None}

    def lines(self) -> list[str]:
        """The summary as text lines: a head line, then details indented."""
        new = self.new or "the new bake"
        head = f"changes vs what runs ({self.running or 'nothing'} -> {new}): "
        if self.counts is not None:
            head += ", ".join(f"{n} {kind}" for kind, n in self.counts.items())
        else:
            head += f"packages unknown ({self.note})" if self.note else "packages unknown"
        lines = [head]
        if self.upgraded:
            shown = [f"{c.name} {c.before} -> {c.after}"
                     for c in self.upgraded[:_UPGRADES_SHOWN]]
            more = len(self.upgraded) - len(shown)
            lines.append("  upgraded: " + ", ".join(shown)
                         + (f" and {more} more (builder diff)" if more > 0 else ""))
        if self.base_before and self.base_after:
            lines.append(f"  base image: {self.base_before} -> {self.base_after}")
        return lines


def changes(project: Project, env_aws: EnvAws, running: amis.Image | None,
            new: amis.Image) -> Changes:
    """What `new` changes against `running` (the launch template's AMI), from both
    records, on this machine or in the records bucket."""
    base_before, base_after = _base_change(env_aws, running.source_ami if running else "",
                                           new.source_ami)
    if running is None:
        return Changes("", new.id, None, (), base_before, base_after, "nothing runs yet")
    try:
        records = [find(project, env_aws, image) for image in (running, new)]
    except AwsError as exc:
        return Changes(running.id, new.id, None, (), base_before, base_after,
                       f"records unreadable: {exc.message}")
    manifests = [record.packages if record is not None else None for record in records]
    if manifests[0] is None or manifests[1] is None:
        missing = [image.id for image, found in zip((running, new), manifests, strict=True)
                   if found is None]
        return Changes(running.id, new.id, None, (), base_before, base_after,
                       f"no package manifest for {', '.join(missing)} here nor in a "
                       "records bucket")
    found = package_changes(list(manifests[0]), list(manifests[1]))
    return Changes(running.id, new.id, count_changes(found),
                   tuple(c for c in found if c.change == "upgraded"), base_before, base_after)


def planned(env_aws: EnvAws, running: amis.Image | None, base_id: str,
            known: Iterable[amis.Image] = ()) -> Changes:
    """A plan's summary before its bake: the base image change; packages after the bake."""
    before, after = _base_change(env_aws, running.source_ami if running else "", base_id,
                                 known)
    return Changes(running.id if running else "", "", None, (), before, after,
                   "known after the bake")


def _base_change(env_aws: EnvAws, before: str, after: str,
                 known: Iterable[amis.Image] = ()) -> tuple[BaseImage | None, BaseImage | None]:
    """Both base images with their creation dates, when they differ."""
    if not before or not after or before == after:
        return None, None
    found = {image.id: image for image in known}
    wanted = [i for i in (before, after) if i not in found]
    if wanted:
        found.update(amis.images_by_id(env_aws.client("ec2"), wanted))

    def dated(image_id: str) -> BaseImage:
        image = found.get(image_id)
        return BaseImage(image_id, image.created.isoformat(timespec="seconds")
                         if image else "")

    return dated(before), dated(after)


def against_running(project: Project, env_aws: EnvAws, running_id: str,
                    new: amis.Image) -> Changes | None:
    """`changes` against the AMI `running_id` (what the launch template launches); None
    when that is `new` itself."""
    if running_id == new.id:
        return None
    running = amis.images_by_id(env_aws.client("ec2"), [running_id]).get(running_id) \
        if running_id else None
    return changes(project, env_aws, running, new)
