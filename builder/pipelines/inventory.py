"""What `rebuild` and `status` know about many combos at once, gathered with a fixed
number of queries per (account, region) whatever the number of combos in it:

- every AMI builder made there for the apps in scope (one describe_images),
- the images each base-image filter matches (one describe_images per owner set, plus
  one for the fixed `source_ami` ids),
- the AMI of every launch template's default version (one call),
- the running AMIs that are neither builder's nor base images (one describe_images by
  id, when there are any).

Places are queried in parallel; a place that fails makes problems of its combos only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from builder.aws import AwsTarget, fleet
from builder.aws import images as amis
from builder.aws.images import Image
from builder.config.layers import ResolvedVars
from builder.config.models import Combo, Settings
from builder.errors import BuilderError, InputError
from builder.project import Project

_PARALLEL_PLACES = 8


@dataclass(frozen=True)
class ComboFacts:
    """One combo as AWS shows it."""

    resolved: ResolvedVars
    images: tuple[Image, ...]  # its usable builder AMIs (baked, released, verified), newest first
    bases: tuple[Image, ...]  # what its base-image setting matches, newest first
    running: Image | None  # the AMI its launch template's default version launches
    running_id: str = ""  # that AMI's id ("" without a launch template)

    @property
    def combo(self) -> Combo:
        return self.resolved.combo

    @property
    def settings(self) -> Settings:
        return self.resolved.settings

    @property
    def newest(self) -> Image | None:
        return self.images[0] if self.images else None

    @property
    def newest_base(self) -> Image:
        return self.bases[0]


@dataclass(frozen=True)
class Inventory:
    """The facts gathered for every combo in scope, and the combos that could not be read."""

    facts: Mapping[Combo, ComboFacts]
    problems: Mapping[Combo, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Scope:
    """The combos a command covers, resolved; combos (or whole envs, comp "*") whose
    config can't be read are problems."""

    resolved: tuple[ResolvedVars, ...]
    problems: Mapping[Combo, str]


def scope(project: Project, app: str | None = None, env: str | None = None) -> Scope:
    """Every combo of `app` (default: every app) in `env` (default: every env).

    An unknown app or env is bad input; a broken env or combo is a problem of its own
    that doesn't hide the others.
    """
    config = project.config
    apps = [app] if app else config.apps()
    if env is not None and not any(env in config.envs(each) for each in apps):
        raise InputError(f"no env {env!r} in " + (f"vars/{app}/" if app else "any app"))
    resolved: list[ResolvedVars] = []
    problems: dict[Combo, str] = {}
    for each_app in apps:
        for each_env in [env] if env else config.envs(each_app):
            if each_env not in config.envs(each_app):
                continue
            try:
                comps = config.components(each_app, each_env)
            except BuilderError as exc:
                problems[Combo(each_app, each_env, "*")] = exc.format(project.root)
                continue
            for comp in comps:
                try:
                    resolved.append(project.resolve(each_app, each_env, comp))
                except BuilderError as exc:
                    problems[Combo(each_app, each_env, comp)] = exc.format(project.root)
    return Scope(tuple(resolved), problems)


def promote_source(combo: Combo, settings: Settings) -> Combo | None:
    """The combo an env with `promote_from` takes its AMIs from."""
    return Combo(combo.app, settings.promote_from, combo.comp) if settings.promote_from else None


def gather(project: Project, in_scope: Sequence[ResolvedVars]) -> Inventory:
    """Facts for every combo in scope and for the combos their envs promote from."""
    wanted: dict[Combo, ResolvedVars] = {r.combo: r for r in in_scope}
    problems: dict[Combo, str] = {}
    for resolved in in_scope:
        source = promote_source(resolved.combo, resolved.settings)
        if source is None or source in wanted:
            continue
        try:
            wanted[source] = project.resolve(source.app, source.env, source.comp)
        except BuilderError as exc:
            problems[source] = exc.format(project.root)
    by_place: dict[AwsTarget, list[ResolvedVars]] = {}
    for resolved in wanted.values():
        by_place.setdefault(AwsTarget.of(resolved.settings), []).append(resolved)
    facts: dict[Combo, ComboFacts] = {}
    project.aws  # noqa: B018 - no local stack: one error, not a problem per place
    with ThreadPoolExecutor(max_workers=max(1, min(_PARALLEL_PLACES, len(by_place))),
                            thread_name_prefix="inventory") as pool:
        for place_facts, place_problems in pool.map(
                lambda item: _place(project, *item), by_place.items()):
            facts.update(place_facts)
            problems.update(place_problems)
    return Inventory(facts, problems)


def _place(project: Project, target: AwsTarget, members: Sequence[ResolvedVars]
           ) -> tuple[dict[Combo, ComboFacts], dict[Combo, str]]:
    try:
        ec2 = project.aws.env(target).client("ec2")
        own = amis.builder_images(ec2, [r.combo.app for r in members])
        filters = {r.settings.source_ami_filter for r in members if r.settings.source_ami_filter}
        matches = amis.matching_images(ec2, [f for f in filters if f is not None])
        fixed = amis.images_by_id(ec2, [r.settings.source_ami for r in members
                                        if r.settings.source_ami])
        defaults = fleet.default_images(ec2)
        # Terraform's templates often launch the base image itself: already at hand.
        known = {image.id: image for found in (own, fixed.values(), *matches.values())
                 for image in found}
        running_ids = {defaults.get(r.settings.launch_template_name, "") for r in members}
        known.update(amis.images_by_id(ec2, [i for i in running_ids if i and i not in known]))
    except BuilderError as exc:
        where = f"{target.account_id} {target.region}"
        return {}, {r.combo: f"{where}: {exc.message}" for r in members}
    by_combo = _by_combo(own)
    facts: dict[Combo, ComboFacts] = {}
    problems: dict[Combo, str] = {}
    for resolved in members:
        settings = resolved.settings
        if settings.source_ami:
            bases = [fixed[settings.source_ami]] if settings.source_ami in fixed else []
        else:
            assert settings.source_ami_filter is not None  # config guarantees one of the two
            bases = matches.get(settings.source_ami_filter, [])
        if not bases:
            problems[resolved.combo] = amis.missing_source(settings).message
            continue
        running_id = defaults.get(settings.launch_template_name, "")
        usable = tuple(i for i in by_combo.get(resolved.combo, ())
                       if i.status in amis.USABLE_STATUSES)
        facts[resolved.combo] = ComboFacts(resolved, usable, tuple(bases),
                                           known.get(running_id), running_id)
    return facts, problems


def _by_combo(images: Iterable[Image]) -> dict[Combo, list[Image]]:
    grouped: dict[Combo, list[Image]] = {}
    for image in images:  # already newest first
        combo = amis.combo_of(image)
        if combo is not None:
            grouped.setdefault(combo, []).append(image)
    return grouped

