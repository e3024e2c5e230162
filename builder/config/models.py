"""Frozen values passed from one step to the next (config → render → bake → release)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from builder.errors import InputError


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


class PromoteBy(StrEnum):
    """How `promote` brings a verified AMI into the target env."""

    COPY = "copy"  # share the AMI with the target account and copy it there
    REBAKE = "rebake"  # bake it in the target env from the same inputs (another partition)


@dataclass(frozen=True)
class SourceAmiFilter:
    """A base image chosen by owner and name pattern: the newest match wins."""

    owners: tuple[str, ...]
    name: str


@dataclass(frozen=True)
class KmsKeys:
    """`kms_key_id`: one key for every region of the env, or one per region."""

    every_region: str = ""
    by_region: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.every_region or self.by_region)

    def for_region(self, region: str) -> str:
        """The key of `region` ("": the account's default EBS key)."""
        return dict(self.by_region).get(region, self.every_region)


@dataclass(frozen=True)
class Settings:
    """The keys the tool itself reads, typed and validated.

    One field per row of `builder.config.keys.KEYS` (same names and order, each of its
    parser's type): the table declares a key, this gives mypy its type.
    """

    components: tuple[str, ...]
    aws_region: str  # the bake region (of a multi-region env: the first of aws_regions)
    aws_regions: tuple[str, ...]  # every region of the env, the bake region first
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
    kms_key_id: KmsKeys
    launch_template_name: str
    codedeploy_application: str
    codedeploy_deployment_group: str
    deploy_strategy: DeployStrategy
    auto_scaling_group: str
    refresh_min_healthy_percent: int
    refresh_checkpoints: tuple[int, ...]
    refresh_alarms: tuple[str, ...]
    asg_pair: tuple[str, str] | None
    promote_from: str | None
    promote_by: PromoteBy
    rebake_env_vars: tuple[str, ...]
    ami_keep: int
    rebuild_max_age_days: int
    vault_password_ssm_parameter: str | None
    ami_ssm_parameter: str | None
    protect_released: bool
    ami_deprecate_after_days: int
    ami_keep_launched_days: int
    records_bucket: str | None

    @property
    def kms_key(self) -> str:
        """The KMS key of `aws_region` ("": the account's default EBS key)."""
        return self.kms_key_id.for_region(self.aws_region)

    @property
    def other_regions(self) -> tuple[str, ...]:
        """The regions a bake copies its AMI to (the calls table's `when` reads this)."""
        return self.aws_regions[1:]

    @property
    def bake_region(self) -> str:
        """Where bakes run: the first region of the env."""
        return self.aws_regions[0]

    def in_region(self, region: str) -> Settings:
        """These settings aimed at another region of the env (`aws_region` = `region`)."""
        if region not in self.aws_regions:
            raise InputError(f"--region {region}: not a region of this env "
                             f"({', '.join(self.aws_regions)})")
        return replace(self, aws_region=region)
