"""AMIs: the typed EC2 image calls every step shares (bake, release, promote, prune,
status), and the lineage tags (docs/architecture.md, "AMI tags, lineage and statuses")."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from builder import process
from builder.aws.session import translate
from builder.config.models import Combo, Settings, SourceAmiFilter
from builder.errors import AwsError, ConfigError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import DescribeImagesRequestPaginateTypeDef, ImageTypeDef

TAG_APP = "builder:app"
TAG_ENV = "builder:env"
TAG_COMP = "builder:comp"
TAG_FINGERPRINT = "builder:fingerprint"
TAG_SOURCE_AMI = "builder:source-ami"
TAG_SOURCE_AMI_NAME = "builder:source-ami-name"
TAG_BUILT_AT = "builder:built-at"
TAG_GIT_COMMIT = "builder:git-commit"
TAG_STATUS = "builder:status"
TAG_PROMOTED_FROM = "builder:promoted-from"
# On an AMI that `promote_by: rebake` baked: the fingerprint of the verified source AMI
# whose inputs it was baked from (its own fingerprint is the target env's).
TAG_SOURCE_FINGERPRINT = "builder:source-fingerprint"
# <bake region>/<ami-id>: a multi-region env's copy of its bake region's AMI
TAG_COPIED_FROM = "builder:copied-from"
TAG_BUILD_ID = "builder:build-id"
TAG_RUN_ID = "builder:run-id"
# sha256 of the bake's packages.json (the image's installed packages)
TAG_PACKAGES_SHA256 = "builder:packages-sha256"
# s3://<records_bucket>/builder/<app>/<env>/<comp>/<ami-id>/: where the bake's record is
# kept (a promoted copy keeps its original's), readable from any machine
TAG_RECORD = "builder:record"
# `<host>/<pid>` of the builder process that made a temporary resource or a building AMI,
# so `reap` knows at once when that process is gone.
TAG_OWNER = "builder:owner"
# A failed bake's build host kept for debugging (`bake --keep-on-failure`): its instance,
# key pair and security group carry the run id and when `reap` may remove them.
TAG_KEPT_FOR_DEBUG = "builder:kept-for-debug"
TAG_KEPT_UNTIL = "builder:kept-until"
# builder:verified-<env>: when a release verified the AMI on that env's new fleet
TAG_VERIFIED_PREFIX = "builder:verified-"
# On an Auto Scaling group (with builder:app/env/comp): one of the comp's two standing
# groups that blue_green_existing alternates between, when asg_pair doesn't name them.
TAG_SLOT = "builder:slot"



class AmiStatus(StrEnum):
    """An AMI's place in its life (the builder:status tag). An AMI is `building` (with
    its run id) until its bake completed every step; then builder itself retags it
    `baked`. Nothing uses a `building` AMI."""

    BUILDING = "building"
    BAKED = "baked"
    RELEASED = "released"
    VERIFIED = "verified"
    FAILED = "failed"


USABLE_STATUSES = (AmiStatus.BAKED, AmiStatus.RELEASED, AmiStatus.VERIFIED)


@dataclass(frozen=True)
class Image:
    """One AMI as builder sees it."""

    id: str
    name: str
    state: str
    owner: str
    created: datetime
    tags: Mapping[str, str] = field(default_factory=dict)
    snapshot_ids: tuple[str, ...] = ()
    encrypted: bool = False
    kms_key_ids: tuple[str, ...] = ()
    description: str = ""
    # EC2's deregistration protection: disabled, enabled-without-cooldown, ...
    protection: str = "disabled"
    deprecation_time: datetime | None = None
    last_launched: datetime | None = None  # when an instance was last launched from it

    @classmethod
    def from_api(cls, raw: ImageTypeDef) -> Image:
        ebs = [m["Ebs"] for m in raw.get("BlockDeviceMappings", []) if "Ebs" in m]
        return cls(
            id=raw["ImageId"],
            name=raw.get("Name", ""),
            state=raw.get("State", ""),
            owner=raw.get("OwnerId", ""),
            created=_parse_time(raw.get("CreationDate")),
            tags={t["Key"]: t["Value"] for t in raw.get("Tags", [])},
            snapshot_ids=tuple(e["SnapshotId"] for e in ebs if e.get("SnapshotId")),
            encrypted=any(e.get("Encrypted") for e in ebs),
            kms_key_ids=tuple(e["KmsKeyId"] for e in ebs if e.get("KmsKeyId")),
            description=raw.get("Description", ""),
            protection=raw.get("DeregistrationProtection") or "disabled",
            deprecation_time=_parse_time(raw["DeprecationTime"])
            if raw.get("DeprecationTime") else None,
            last_launched=_parse_time(raw["LastLaunchedTime"])
            if raw.get("LastLaunchedTime") else None,
        )

    @property
    def status(self) -> str:
        return self.tags.get(TAG_STATUS, "")

    @property
    def protected(self) -> bool:
        """Whether EC2 refuses to deregister it (a cooldown after disabling counts)."""
        return self.protection != "disabled"

    @property
    def fingerprint(self) -> str:
        return self.tags.get(TAG_FINGERPRINT, "")

    @property
    def source_ami(self) -> str:
        return self.tags.get(TAG_SOURCE_AMI, "")

    def belongs_to(self, combo: Combo) -> bool:
        return (self.tags.get(TAG_APP), self.tags.get(TAG_ENV), self.tags.get(TAG_COMP)) == (
            combo.app, combo.env, combo.comp)

    def age_days(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(UTC)) - self.created).total_seconds() / 86400


def owner() -> str:
    """This process as `<host>/<pid>`: the value of the owner tag (images.TAG_OWNER)."""
    return f"{socket.gethostname()}/{os.getpid()}"


def owner_gone(value: str | None) -> bool:
    """Whether the builder process an owner tag names is known to be gone: it ran on
    this host and no such process exists. Another host's process can't be checked."""
    host, _, pid = (value or "").rpartition("/")
    return process.on_this_host_and_gone(host, pid)


def _parse_time(text: str | None) -> datetime:
    if not text:
        return datetime.fromtimestamp(0, UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def verified_tag(env: str) -> str:
    """The tag key that records when an AMI was verified in `env`."""
    return f"{TAG_VERIFIED_PREFIX}{env}"


def newest_first(images: Iterable[Image]) -> list[Image]:
    """Images sorted newest first (creation date, then id for equal dates)."""
    return sorted(images, key=lambda i: (i.created, i.id), reverse=True)


def describe(ec2: EC2Client, *, owners: Sequence[str] | None = None, image_ids: Sequence[str] = (),
             filters: Mapping[str, Sequence[str]] | None = None,
             executable_users: Sequence[str] = ()) -> list[Image]:
    """describe_images with paging, as Image values, newest first."""
    request: DescribeImagesRequestPaginateTypeDef = {}
    if owners:
        request["Owners"] = list(owners)
    if image_ids:
        request["ImageIds"] = list(image_ids)
    if executable_users:
        request["ExecutableUsers"] = list(executable_users)
    if filters:
        request["Filters"] = [{"Name": k, "Values": list(v)} for k, v in filters.items()]
    with translate("describing images"):
        pages = ec2.get_paginator("describe_images").paginate(**request)
        return newest_first(Image.from_api(raw) for page in pages for raw in page["Images"])


def resolve_source(ec2: EC2Client, settings: Settings) -> Image:
    """The base image: the `source_ami` id, or the newest match of `source_ami_filter`."""
    if settings.source_ami:
        found = describe(ec2, image_ids=[settings.source_ami])
    else:
        assert settings.source_ami_filter is not None  # config guarantees one of the two
        wanted = settings.source_ami_filter
        found = describe(ec2, owners=wanted.owners,
                         filters={"name": [wanted.name], "state": ["available"]})
    if not found:
        raise missing_source(settings)
    return found[0]


def missing_source(settings: Settings) -> ConfigError:
    """The error when an env's base-image setting finds nothing."""
    if settings.source_ami:
        return ConfigError(f"source_ami: {settings.source_ami} not found in "
                           f"{settings.aws_region}")
    assert settings.source_ami_filter is not None
    wanted = settings.source_ami_filter
    return ConfigError(f"source_ami_filter: no available image named {wanted.name!r} owned "
                       f"by {', '.join(wanted.owners)} in {settings.aws_region}")


def images_of(ec2: EC2Client, combo: Combo, *, fingerprint: str | None = None,
              states: Sequence[str] = ("available",)) -> list[Image]:
    """The AMIs builder made (or copied) for one combo in this account, newest first."""
    filters: dict[str, Sequence[str]] = {
        f"tag:{TAG_APP}": [combo.app], f"tag:{TAG_ENV}": [combo.env],
        f"tag:{TAG_COMP}": [combo.comp], "state": list(states),
    }
    if fingerprint:
        filters[f"tag:{TAG_FINGERPRINT}"] = [fingerprint]
    return describe(ec2, owners=["self"], filters=filters)


def set_tags(ec2: EC2Client, image: Image, tags: Mapping[str, str]) -> None:
    """Tag an AMI and its snapshots alike (lineage stays with the data)."""
    with translate(f"tagging {image.id}"):
        ec2.create_tags(Resources=[image.id, *image.snapshot_ids],
                        Tags=[{"Key": k, "Value": v} for k, v in tags.items()])


# -- batched queries (rebuild, status: calls per account and region, not per combo) ----


def combo_of(image: Image) -> Combo | None:
    """The (app, env, comp) an AMI was made for, from its tags."""
    app, env, comp = (image.tags.get(TAG_APP), image.tags.get(TAG_ENV),
                      image.tags.get(TAG_COMP))
    return Combo(app, env, comp) if app and env and comp else None


def built_at(image: Image) -> datetime:
    """When the image's content was baked: a promoted copy keeps its source's bake time."""
    tag = image.tags.get(TAG_BUILT_AT)
    return _parse_time(tag) if tag else image.created


def builder_images(ec2: EC2Client, apps: Sequence[str], *,
                   states: Sequence[str] = ("available",)) -> list[Image]:
    """Every AMI builder made (or copied) for these apps in this account and region, in
    one query for all their combos; newest first."""
    return describe(ec2, owners=["self"],
                    filters={f"tag:{TAG_APP}": sorted(set(apps)), "state": list(states)})


def matching_images(ec2: EC2Client, wanted: Iterable[SourceAmiFilter]
                    ) -> dict[SourceAmiFilter, list[Image]]:
    """The available images each base-image filter matches, newest first: one query per
    distinct owner set (EC2 ORs the name patterns), matched to each filter here."""
    by_owners: dict[tuple[str, ...], set[SourceAmiFilter]] = {}
    for each in wanted:
        by_owners.setdefault(each.owners, set()).add(each)
    found: dict[SourceAmiFilter, list[Image]] = {}
    for owners, filters in by_owners.items():
        candidates = describe(ec2, owners=owners, filters={
            "name": sorted(f.name for f in filters), "state": ["available"]})
        for each in filters:
            pattern = _name_pattern(each.name)
            found[each] = [i for i in candidates if pattern.fullmatch(i.name)]
    return found


def _name_pattern(wildcards: str) -> re.Pattern[str]:
    """EC2's name filter syntax: `*` any run of characters, `?` one, all else literal."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                              for c in wildcards), re.DOTALL)


def images_by_id(ec2: EC2Client, image_ids: Iterable[str]) -> dict[str, Image]:
    """The images of these ids this account can see, in one query; ids that no longer
    exist are left out (EC2 fails the whole call for one: then they are asked singly)."""
    wanted = sorted(set(image_ids))
    if not wanted:
        return {}
    try:
        return {i.id: i for i in describe(ec2, image_ids=wanted)}
    except AwsError as exc:
        if exc.code != "InvalidAMIID.NotFound":
            raise
        if len(wanted) == 1:
            return {}
    found: dict[str, Image] = {}
    for each in wanted:
        found.update(images_by_id(ec2, [each]))
    return found


def deregister(ec2: EC2Client, image: Image) -> None:
    """Deregister an AMI (a pending copy stops) and delete its snapshots."""
    with translate(f"deregistering {image.id}"):
        ec2.deregister_image(ImageId=image.id)
    for snapshot in image.snapshot_ids:
        with translate(f"deleting {snapshot} of {image.id}"):
            ec2.delete_snapshot(SnapshotId=snapshot)


def deprecate(ec2: EC2Client, image: Image, days: int) -> datetime | None:
    """Have EC2 deprecate an AMI `days` from now (ami_deprecate_after_days; 0: not at
    all). Every AMI builder makes or copies goes through here: EC2 doesn't carry a
    deprecation time over to a copy."""
    if not days:
        return None
    # EC2 keeps the time to the minute; the request says so itself.
    at = (datetime.now(UTC) + timedelta(days=days)).replace(second=0, microsecond=0)
    with translate(f"setting {image.id}'s deprecation time"):
        ec2.enable_image_deprecation(ImageId=image.id, DeprecateAt=at)
    return at


def set_protection(ec2: EC2Client, image_id: str, protect: bool) -> None:
    """Turn EC2's deregistration protection of an AMI on (without the 24-hour cooldown,
    so builder can take it off when the AMI goes) or off."""
    if protect:
        with translate(f"protecting {image_id} from deregistration"):
            ec2.enable_image_deregistration_protection(ImageId=image_id, WithCooldown=False)
    else:
        with translate(f"removing {image_id}'s deregistration protection"):
            ec2.disable_image_deregistration_protection(ImageId=image_id)


def images_of_run(ec2: EC2Client, run_id: str, names: Sequence[str] = ()) -> list[Image]:
    """Every AMI in any state a bake (or promotion) registered: tagged with its run id,
    or named as it names them (an image Packer has not tagged yet)."""
    found = {i.id: i for i in describe(ec2, owners=["self"],
                                       filters={f"tag:{TAG_RUN_ID}": [run_id]})}
    if names:
        found.update((i.id, i) for i in describe(ec2, owners=["self"],
                                                 filters={"name": list(names)}))
    return newest_first(found.values())


def snapshots_of_run(ec2: EC2Client, run_id: str) -> list[str]:
    """The snapshots tagged with a run id (those of an AMI already deregistered)."""
    with translate("finding snapshots of a run"):
        pages = ec2.get_paginator("describe_snapshots").paginate(
            OwnerIds=["self"], Filters=[{"Name": f"tag:{TAG_RUN_ID}", "Values": [run_id]}])
        return [s["SnapshotId"] for page in pages for s in page["Snapshots"]]


def delete_snapshot(ec2: EC2Client, snapshot_id: str) -> None:
    """Delete a snapshot; one already gone is fine."""
    try:
        with translate(f"deleting {snapshot_id}"):
            ec2.delete_snapshot(SnapshotId=snapshot_id)
    except AwsError as exc:
        if exc.code != "InvalidSnapshot.NotFound":
            raise
