"""`promote` with `promote_by: rebake`: the target env bakes its own AMI from the inputs
of the source env's verified one, for envs that can't receive a copy (another partition
— China, GovCloud — or an organisation that forbids sharing into prod).

"The same inputs" is checked by fingerprint, before anything is written:

1. this checkout's inputs for the source env give the verified AMI's fingerprint (its
   `builder:fingerprint` tag), pinned to the base image it was baked from: the repo
   still holds what made it (for an AMI the source env got by a copy, the inputs of the
   env up its `promote_from` chain that baked it);
2. the target env's inputs equal the source env's in every part that makes the image
   (`fingerprint.build_inputs`: the rendered template, every hashed file, the app's
   common vault files, the Ansible options and each var but where-and-how ones such as
   the region, account, KMS key, networking, and those the target lists in
   `rebake_env_vars`). Anything else differing is named and
   refused (exit 2).

The base image is resolved in the target by the same filter; its id (each region has
its own) is said when it differs. The bake is builder's own (`builder.bake.build`),
tagged `builder:promoted-from` and `builder:source-fingerprint` from its first moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from builder.aws import images as amis
from builder.bake import fingerprint as fingerprints
from builder.bake.build import BakeOptions, BakeResult, bake
from builder.bake.plan import pin_source, plan
from builder.config.layers import ResolvedVars
from builder.config.models import PromoteBy
from builder.errors import RefusedError
from builder.interrupts import Cancel
from builder.output import ProgressFn
from builder.project import Project
from builder.records import BuildRecord
from builder.render.template import Rendered


@dataclass(frozen=True)
class SameInputs:
    """What the checks found: the target's base image, and a note when its id is not the
    source's."""

    base: amis.Image
    base_note: str


def check_same_inputs(project: Project, source: ResolvedVars, target: ResolvedVars,
                      image: amis.Image) -> SameInputs:
    """Refuse (RefusedError, exit 2) unless the target's bake inputs are the ones `image`
    was baked from; reads the target's base image, writes nothing."""
    source_env, target_env = source.combo.env, target.combo.env
    base_of_source = amis.Image(image.source_ami, image.tags.get(amis.TAG_SOURCE_AMI_NAME, ""),
                                "available", "", image.created)
    baked_in, source_rendered, source_print = _baked_from(project, source, image,
                                                          base_of_source)
    baked_env = baked_in.combo.env
    target_plan = plan(project, target.combo)
    own = target.settings.rebake_env_vars
    differ = fingerprints.changed_parts(
        fingerprints.build_inputs(project.layout, baked_in, source_rendered, source_print,
                                  own),
        fingerprints.build_inputs(project.layout, target, target_plan.rendered,
                                  target_plan.fingerprint, own))
    if differ:
        raise RefusedError(
            f"{target_env} can't rebake {source_env}'s {image.id}: its inputs differ from "
            f"{baked_env}'s" + ("" if baked_env == source_env else " (which baked it)")
            + f" in {', '.join(differ)} (a rebake bakes from the same template, "
            f"files and vars; only where-and-how values such as the region, account, KMS key "
            f"and network may differ): make them the same in vars/{target.combo.app}/"
            f"{target_env}/, or list a var that is {target_env}'s own in rebake_env_vars")
    base = target_plan.source
    note = "" if base.id == image.source_ami else (
        f"base image {base.id} ({base.name}) in {target.settings.aws_region}, not "
        f"{image.source_ami} ({base_of_source.name or 'unnamed'}) as in {source_env}: "
        "the same filter, each region's own image")
    return SameInputs(base, note)


def rebake(project: Project, target: ResolvedVars, image: amis.Image, lineage: str, *,
           progress: ProgressFn, cancel: Cancel) -> BakeResult:
    """Bake the target combo (builder's bake, its lock and clean-up) with the lineage
    tags; an AMI the target already has with that fingerprint is reused and given them."""
    tags = {amis.TAG_PROMOTED_FROM: lineage, amis.TAG_SOURCE_FINGERPRINT: image.fingerprint}
    result = bake(project, target.combo, options=BakeOptions(tags=tuple(tags.items())),
                  progress=progress, cancel=cancel)
    if result.skipped:
        ec2 = project.env_aws(target).client("ec2")
        existing = amis.images_by_id(ec2, [result.ami_id])[result.ami_id]
        if any(existing.tags.get(k) != v for k, v in tags.items()):
            amis.set_tags(ec2, existing, tags)
    return result


def _baked_from(project: Project, source: ResolvedVars, image: amis.Image,
                base: amis.Image) -> tuple[ResolvedVars, Rendered, fingerprints.Fingerprint]:
    """The env whose inputs in this checkout give `image`'s fingerprint, with them: the
    source env, or for a copy (promoted by copy, fingerprint and all) the env up its
    `promote_from` chain of copies that baked it. None: refused, naming what changed."""
    env, seen = source, {source.combo.env}
    while True:
        _, rendered, found = pin_source(project, env, base)
        if found.value == image.fingerprint:
            return env, rendered, found
        earlier = env.settings.promote_from
        copied = (amis.TAG_PROMOTED_FROM in image.tags
                  and amis.TAG_SOURCE_FINGERPRINT not in image.tags)
        if not (copied and earlier and env.settings.promote_by == PromoteBy.COPY
                and earlier not in seen):
            break
        seen.add(earlier)
        env = project.resolve(env.combo.app, earlier, env.combo.comp)
    _, _, here = pin_source(project, source, base)
    recorded = _recorded_inputs(project, source, image)
    what = fingerprints.changed_parts(recorded, here.inputs) if recorded else []
    commit = image.tags.get(amis.TAG_GIT_COMMIT)
    raise RefusedError(
        f"this checkout does not hold the inputs {source.combo.env}'s {image.id} was baked "
        f"from (its fingerprint {image.fingerprint[:12] or 'unset'}, here {here.value[:12]}"
        + (f"; changed: {', '.join(what)}" if what else "") + "): check out "
        + (f"commit {commit[:12]}, " if commit else "the commit it was baked from, ")
        + "then promote again")


def _recorded_inputs(project: Project, source: ResolvedVars, image: amis.Image
                     ) -> Mapping[str, Any]:
    """The inputs the source AMI's bake saved, when it ran here (else empty)."""
    combo, build_id = source.combo, image.tags.get(amis.TAG_BUILD_ID, "")
    builds = project.layout.state_dir / "builds" / combo.app
    # A copy's build ran in the env that baked it.
    folder = next(iter(sorted(builds.glob(f"*/{combo.comp}/{build_id}"))), None)
    return BuildRecord.from_folder(image.id, folder).inputs if build_id and folder else {}
