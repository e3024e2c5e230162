"""Frozen values passed from one step to the next (config → render → bake → release)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, order=True)
class Combo:
    """One (app, env, comp)."""

    app: str
    env: str
    comp: str

    def __str__(self) -> str:
        return f"{self.app}/{self.env}/{self.comp}"


class DeployStrategy(StrEnum):
    """How `release` takes a new launch-template version to the fleet."""

    BLUE_GREEN_COPY = "blue_green_copy"  # CodeDeploy copies the group's one ASG
    BLUE_GREEN_EXISTING = "blue_green_existing"  # CodeDeploy between two standing ASGs
    INSTANCE_REFRESH = "instance_refresh"  # an Auto Scaling instance refresh in place
    NONE = "none"  # the launch template only


@dataclass(frozen=True)
class SourceAmiFilter:
    """A base image chosen by owner and name pattern: the newest match wins."""

    owners: tuple[str, ...]
    name: str


@dataclass(frozen=True)
class Settings:
    """The keys the tool itself reads, typed and validated.

    One field per row of `builder.config.keys.KEYS` (same names and order, each of its
    parser's type): the table declares a key, this gives mypy its type.
    """

    components: tuple[str, ...]
    aws_region: str
    aws_account_id: str
    aws_profile: str | None
    aws_role_arn: str | None
    packer_template: str
    playbook: str
    source_ami: str | None
    source_ami_filter: SourceAmiFilter | None
    instance_type: str
    ssh_source_cidrs: tuple[str, ...]
    ssh_username: str
    ami_name: str
    encrypt_boot: bool
    kms_key_id: str
    launch_template_name: str
    codedeploy_application: str
    codedeploy_deployment_group: str
    deploy_strategy: DeployStrategy
    asg_pair: tuple[str, str] | None
    promote_from: str | None
    ami_keep: int
    rebuild_max_age_days: int
    vault_password_ssm_parameter: str | None
