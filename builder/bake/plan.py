"""Plan a bake: resolve the combo, find its base image, render with the image pinned,
fingerprint, and look for an AMI that already has that fingerprint.

Everything here runs before anything is created in AWS; `rebuild` plans hundreds of
combos from batched image queries with `pin_source`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from builder.aws import EnvAws, images
from builder.bake import fingerprint as fingerprints
from builder.config.layers import ResolvedVars
from builder.config.models import Combo
from builder.errors import InputError
from builder.project import Project
from builder.provision import ansible_cfg, requirements, vault
from builder.provision import steps as provision
from builder.provision.ansible import NO_OPTIONS, AnsibleOptions
from builder.render.template import Rendered


@dataclass(frozen=True)
class Plan:
    """Everything known before Packer runs: enough to decide whether to bake."""

    resolved: ResolvedVars
    env_aws: EnvAws
    source: images.Image
    rendered: Rendered  # pinned to the source AMI id
    fingerprint: fingerprints.Fingerprint
    existing: images.Image | None


def pin_source(project: Project, resolved: ResolvedVars, source: images.Image,
               options: AnsibleOptions = NO_OPTIONS,
               ) -> tuple[ResolvedVars, Rendered, fingerprints.Fingerprint]:
    """The combo rendered with its base image pinned by id, and the bake's fingerprint
    (the Ansible tags of `options` included).

    No AWS calls: `rebuild` plans hundreds of combos from batched image queries.
    """
    pinned = dataclasses.replace(resolved, values={
        **resolved.values, "source_ami": source.id, "source_ami_filter": None})
    rendered = project.renderer.render(pinned)
    fingerprint = fingerprints.compute(project.layout, resolved, rendered, source.id,
                                       [*provision.tool_files(project.layout, resolved),
                                        *rendered.template_files],
                                       project.file_cache, options.fingerprint_part())
    return pinned, rendered, fingerprint


def require_no_password(project: Project, resolved: ResolvedVars) -> None:
    """A bake without a vault password of builder's: fine unless the play reaches
    vault-encrypted files that the repo's ansible.cfg can't open either (it names no
    password file, or one this machine lacks): then bad input naming both, before
    Packer starts."""
    config = ansible_cfg.find(project.layout, resolved.playbook_path)
    named = config.vault_password_file()
    if named is not None and named.is_file():
        return  # Ansible reads the repo's own password file
    walk = project.file_cache.playbook_files(project.layout, resolved.playbook_path)
    encrypted = sorted(p for p in walk.files | walk.rendered(resolved.values)
                       if p.is_file() and fingerprints.is_vault_encrypted(p))
    if not encrypted:
        return
    files = ", ".join(project.layout.relative(p) for p in encrypted)
    if named is not None:
        raise InputError(f"vault_password_file {named} does not exist, and the play loads "
                         f"vault files: {files}", file=config.path)
    raise InputError(f"the play loads vault files ({files}) and no vault password was given: "
                     f"{vault.HOW_TO_GIVE}")


def plan(project: Project, combo: Combo, options: AnsibleOptions = NO_OPTIONS) -> Plan:
    """Resolve, find the base image, render with it pinned, fingerprint, look for an
    AMI with that fingerprint."""
    resolved = project.resolve(combo.app, combo.env, combo.comp)
    # The repo's requirements.yml (once per set): a source out of reach stops the bake
    # here, before any AWS call.
    requirements.ensure(project.layout, ansible_cfg.find(project.layout, resolved.playbook_path),
                        resolved.playbook_path)
    # A template builder can't adapt is refused before any AWS call.
    project.renderer.render(resolved)
    for key in (provision.PRE_SHELL_VAR, provision.POST_SHELL_VAR):
        provision.shell_steps(resolved, key)
    env_aws = project.env_aws(resolved)
    ec2 = env_aws.client("ec2")
    source = images.resolve_source(ec2, resolved.settings)
    pinned, rendered, fingerprint = pin_source(project, resolved, source, options)
    existing = next((image for image in images.images_of(ec2, combo,
                                                          fingerprint=fingerprint.value)
                     if image.status in images.USABLE_STATUSES), None)
    return Plan(pinned, env_aws, source, rendered, fingerprint, existing)
