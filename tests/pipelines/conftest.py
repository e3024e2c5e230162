"""AMIs as a bake leaves them, made in the emulator without Packer: an instance of the
base image, an image of it, an encrypted copy with the env's key, tagged like a bake
(and the bake's saved fingerprint inputs)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import typer.main

from builder.aws import images
from builder.aws.images import Image
from builder.bake.plan import pin_source
from builder.cli import app, hoist_globals
from builder.config.models import Combo
from builder.local.stack import date_image
from builder.project import Project


def ec2_of(project: Project, combo: Combo) -> Any:
    return project.env_aws(project.resolve(combo.app, combo.env, combo.comp)).client("ec2")


def bake_like(project: Project, combo: Combo, *, base: Image | None = None,
              built_at: datetime | None = None, created: datetime | None = None,
              kms_key_id: str | None = None,
              tags: Mapping[str, str] | None = None) -> Image:
    """An AMI of `combo` with the lineage tags and fingerprint a bake from `base`
    (default: the newest base image) gives it at `built_at` (default: now); made by EC2
    at `created` (default: now; the emulator dates it, so tests order images without
    waiting); encrypted with `kms_key_id` (default: the env's, else the account's EBS
    key)."""
    resolved = project.resolve(combo.app, combo.env, combo.comp)
    settings = resolved.settings
    ec2 = project.env_aws(resolved).client("ec2")
    base = base or images.resolve_source(ec2, settings)
    instance = ec2.run_instances(ImageId=base.id, MinCount=1, MaxCount=1,
                                 InstanceType=settings.instance_type)["Instances"][0]["InstanceId"]
    plain = ec2.create_image(InstanceId=instance, Name=f"builder-test-{uuid.uuid4().hex}")
    when = built_at or datetime.now(UTC)
    name = f"{settings.ami_name}-{when:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
    encryption: dict[str, Any] = {"Encrypted": True}
    key = settings.kms_key if kms_key_id is None else kms_key_id
    if key:
        encryption["KmsKeyId"] = key
    ami = ec2.copy_image(SourceImageId=plain["ImageId"], SourceRegion=settings.aws_region,
                         Name=name, **encryption)["ImageId"]
    ec2.deregister_image(ImageId=plain["ImageId"])
    if created:
        date_image(project, combo.app, combo.env, combo.comp, ami, created)
    ec2.terminate_instances(InstanceIds=[instance])
    _, _, fingerprint = pin_source(project, resolved, base)
    build_id = f"{when:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"
    # What a bake keeps of its inputs, so rebuild can say what changed since.
    artifacts = (project.layout.state_dir / "builds" / combo.app / combo.env / combo.comp /
                 build_id)
    artifacts.mkdir(parents=True)
    (artifacts / "fingerprint.json").write_text(json.dumps(
        {"fingerprint": fingerprint.value, "inputs": fingerprint.inputs}))
    image = images.describe(ec2, image_ids=[ami])[0]
    images.set_tags(ec2, image, {
        "Name": name, images.TAG_APP: combo.app, images.TAG_ENV: combo.env,
        images.TAG_COMP: combo.comp, images.TAG_FINGERPRINT: fingerprint.value,
        images.TAG_SOURCE_AMI: base.id, images.TAG_SOURCE_AMI_NAME: base.name,
        images.TAG_BUILT_AT: when.isoformat(timespec="seconds"),
        images.TAG_STATUS: images.AmiStatus.BAKED,
        images.TAG_BUILD_ID: build_id,
        **(tags or {})})
    return images.describe(ec2, image_ids=[ami])[0]


def check_builder_command(argv: Sequence[str]) -> None:
    """Fail unless `builder <argv>` parses: a real command (or `local` subcommand) with
    options it has and the arguments it takes. Nothing runs."""
    group: Any = typer.main.get_command(app)
    ctx = group.make_context("builder", hoist_globals(list(argv)))
    while True:
        # typer's click keeps the subcommand's name apart from its arguments, as click does.
        rest = [*ctx._protected_args, *ctx.args]
        assert rest, f"builder {' '.join(argv)}: no command"
        name, command, rest = group.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
        if not hasattr(command, "resolve_command"):
            assert not ctx.args, f"builder {' '.join(argv)}: unexpected {ctx.args}"
            return
        group = command
