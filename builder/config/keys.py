"""The builder keys: the one table that defaults, validation, `Settings`, the README key
table and `builder keys` are all made from.

Each `Key` row names a var the tool itself reads, its default (Jinja, rendered like any
other value; none for a required key), the parser that turns the resolved value into
the `Settings` field of the same name, and a one-line doc. A parser reports problems
through `Check.fail` and always returns a value of the field's type, so one resolve
reports every problem at once. `RULES` are the checks that read more than one key.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from builder.aws.partition import ARN_PARTITION, of_arn, partition_of
from builder.config.layout import NAME_RE, Layout
from builder.config.models import (
    Combo,
    DeployStrategy,
    KmsKeys,
    PromoteBy,
    Settings,
    SourceAmiFilter,
)
from builder.output import table

T = TypeVar("T")

_REGION_RE = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d")
_ACCOUNT_RE = re.compile(r"\d{12}")
_ROLE_RE = re.compile(rf"arn:{ARN_PARTITION}:iam::\d{{12}}:role/[\w+=,.@/-]+")
AMI_ID_RE = re.compile(r"ami-[0-9a-f]{8,17}")
_USER_RE = re.compile(r"[a-z_][a-z0-9_-]*")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# EC2's rule for AMI names is 3-128 characters; a bake appends "-<yyyymmddHHMMSS>".
_AMI_NAME_RE = re.compile(r"[A-Za-z0-9()\[\] ./'@_-]{3,100}")
# SSM's parameter names: a bare name, or a path of at most 15 levels under /; SSM keeps
# names beginning with aws or ssm (any case) for itself.
_SSM_NAME_RE = re.compile(r"(?!/?(?i:aws|ssm))(?:[A-Za-z0-9_.-]{1,1011}|(/[A-Za-z0-9_.-]+){1,15})")


@dataclass(frozen=True)
class Check:
    """What a key's parser sees besides the value: the combo, the repo and `fail`."""

    key: str
    required: bool
    combo: Combo
    layout: Layout
    report: Callable[[str, str], None]

    def fail(self, message: str) -> None:
        """Record a problem with this key (at the file:line its value came from)."""
        self.report(self.key, message)


Parser = Callable[[Any, Check], T]


@dataclass(frozen=True)
class Key(Generic[T]):
    """One builder key: its name (= the `Settings` field), default, parser and doc."""

    name: str
    parse: Parser[T]
    doc: str
    default: Any = None
    required: bool = False

    def shown_default(self) -> str:
        """The default as `builder keys` and the README show it."""
        if self.required:
            return "required"
        if self.default is None:
            return "none"
        if isinstance(self.default, str) and self.default:
            return self.default
        return json.dumps(self.default)

    def to_json(self) -> dict[str, Any]:
        """One entry of `builder keys --json`."""
        return {"name": self.name, "default": self.default, "required": self.required,
                "doc": self.doc}


# -- parsers -------------------------------------------------------------------


def _text(pattern: re.Pattern[str] | None = None, what: str = "", *,
          allow_empty: bool = False) -> Parser[str]:
    """A string (a number is taken as its digits); `pattern` must match it whole."""

    def parse(value: Any, check: Check) -> str:
        if value is None or value == "":
            if not allow_empty:
                check.fail("required" if check.required else "must not be empty")
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int):
            check.fail(f"must be a string, not {type(value).__name__}")
            return ""
        text = str(value)
        if pattern is not None and not pattern.fullmatch(text):
            check.fail(f"{text!r:.60} is not {what}")
        return text

    return parse


def _optional(pattern: re.Pattern[str] | None = None, what: str = "") -> Parser[str | None]:
    """Like `_text`, but unset (null or empty) is None."""
    text = _text(pattern, what, allow_empty=True)

    def parse(value: Any, check: Check) -> str | None:
        return text(value, check) or None

    return parse


def component_problem(value: Any) -> str | None:
    """What is wrong with a `components` value, or None: also used to list an env's comps."""
    if value is None:
        return "required (the list of comps of this env)"
    if not isinstance(value, list) or not value:
        return "must be a non-empty list of comp names"
    for item in value:
        if not isinstance(item, str) or not NAME_RE.fullmatch(item):
            return f"{item!r:.50} must match [a-z0-9][a-z0-9-]* (at most 40 characters)"
    return None


def _components(value: Any, check: Check) -> tuple[str, ...]:
    problem = component_problem(value)
    if problem:
        check.fail(problem)
        return ()
    if check.combo.comp not in value:
        check.fail(f"comp {check.combo.comp!r} is not in this env's components {value}")
    return tuple(value)


_account_text = _text(_ACCOUNT_RE, "a 12-digit account id")


def _account(value: Any, check: Check) -> str:
    # YAML reads an unquoted id as a number and drops its leading zeros.
    if isinstance(value, int) and len(str(value)) != 12:
        check.fail(f"{value!r} is not 12 digits (quote account ids that start with 0)")
        return ""
    return _account_text(value, check)


_playbook_text = _text()


def _playbook(value: Any, check: Check) -> str:
    playbook = _playbook_text(value, check)
    if playbook and (Path(playbook).is_absolute() or ".." in Path(playbook).parts):
        check.fail(f"{playbook!r} must be a path inside the infra repo")
    return playbook


def _source_filter(value: Any, check: Check) -> SourceAmiFilter | None:
    if value is None or value == "":
        return None
    if not isinstance(value, Mapping):
        check.fail("must be a mapping {owners: [...], name: pattern}")
        return None
    owners, name = value.get("owners"), value.get("name")
    unknown = sorted(set(value) - {"owners", "name"})
    if unknown:
        check.fail(f"unknown keys {unknown} (allowed: owners, name)")
    if not (isinstance(owners, list) and owners and all(isinstance(o, str | int) for o in owners)):
        check.fail("owners: must be a non-empty list of account ids or aliases")
        return None
    if not isinstance(name, str) or not name:
        check.fail("name: must be an image name pattern (wildcards * and ?)")
        return None
    return SourceAmiFilter(owners=tuple(str(o) for o in owners), name=name)


def _cidrs(value: Any, check: Check) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        check.fail("must be a non-empty list of CIDR blocks")
        return ()
    for item in value:
        try:
            ipaddress.ip_network(str(item))
        except ValueError:
            check.fail(f"{item!r} is not a CIDR block like 10.0.0.0/8")
            return ()
    return tuple(str(item) for item in value)


_region_text = _text(_REGION_RE, "a region like eu-west-1", allow_empty=True)


def _region(value: Any, check: Check) -> str:
    # Unset is allowed here: the rule _one_region_key asks for it or aws_regions.
    return _region_text(value, check)


def _regions(value: Any, check: Check) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if not isinstance(value, list) or not value:
        check.fail("must be a non-empty list of regions (the first is where bakes run)")
        return ()
    if not all(isinstance(item, str) and _REGION_RE.fullmatch(item) for item in value):
        check.fail(f"{value!r:.80} must list regions like eu-west-1")
        return ()
    if len(set(value)) != len(value):
        check.fail(f"{value} names a region twice")
        return ()
    return tuple(value)


_key_text = _text(allow_empty=True)


def _kms_keys(value: Any, check: Check) -> KmsKeys:
    if not isinstance(value, Mapping):
        return KmsKeys(every_region=_key_text(value, check))
    pairs = tuple((str(region), key) for region, key in value.items())
    if not all(_REGION_RE.fullmatch(region) and isinstance(key, str) and key
               for region, key in pairs):
        check.fail("must be a key id, alias or ARN, or a mapping of region to one")
        return KmsKeys()
    return KmsKeys(by_region=pairs)


def _flag(value: Any, check: Check) -> bool:
    if not isinstance(value, bool):
        check.fail(f"must be true or false, not {value!r}")
        # The placeholder is the value's truth, so RULES judge `encrypt_boot: yes` as set.
        return bool(value)
    return value


def _whole(minimum: int) -> Parser[int]:
    def parse(value: Any, check: Check) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            check.fail(f"must be a whole number ≥ {minimum}, not {value!r:.30}")
            return minimum
        return value

    return parse


def _deploy_strategy(value: Any, check: Check) -> DeployStrategy:
    try:
        return DeployStrategy(value)
    except ValueError:
        check.fail(f"{value!r:.40} is not one of "
                   + ", ".join(strategy.value for strategy in DeployStrategy))
        return DeployStrategy.BLUE_GREEN_COPY


def _promote_by(value: Any, check: Check) -> PromoteBy:
    try:
        return PromoteBy(value)
    except ValueError:
        check.fail(f"{value!r:.40} is not one of " + ", ".join(way.value for way in PromoteBy))
        return PromoteBy.COPY


def _percent(value: Any, check: Check) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        check.fail(f"must be a whole number from 0 to 100, not {value!r:.30}")
        return 100
    return value


def _checkpoints(value: Any, check: Check) -> tuple[int, ...]:
    """Percentages of an instance refresh to pause at: rising, each 1-100."""
    if value is None or value == []:
        return ()
    if not (isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 100 for v in value)
            and value == sorted(set(value))):
        check.fail(f"must be a rising list of whole percentages from 1 to 100, not "
                   f"{value!r:.40}")
        return ()
    return tuple(value)


def _names(value: Any, check: Check) -> tuple[str, ...]:
    if value is None or value == []:
        return ()
    if not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
        check.fail(f"must be a list of names, not {value!r:.40}")
        return ()
    return tuple(value)


def _asg_pair(value: Any, check: Check) -> tuple[str, str] | None:
    if value is None or value == "":
        return None
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(name, str) and name for name in value)):
        check.fail(f"must be a list of two Auto Scaling group names, not {value!r:.60}")
        return None
    if value[0] == value[1]:
        check.fail(f"names {value[0]!r} twice: the pair is two Auto Scaling groups")
        return None
    return value[0], value[1]


_env_name = _optional(NAME_RE, "an env name")


def _promote_from(value: Any, check: Check) -> str | None:
    source = _env_name(value, check)
    if source == check.combo.env:
        check.fail("an env can't promote from itself")
    elif source and source not in check.layout.envs(check.combo.app):
        check.fail(f"no env {source!r} in vars/{check.combo.app}/")
    return source


_VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _var_names(value: Any, check: Check) -> tuple[str, ...]:
    if value is None or value == []:
        return ()
    if not isinstance(value, list) or not all(
            isinstance(item, str) and _VAR_NAME_RE.fullmatch(item) for item in value):
        check.fail(f"{value!r:.60} must be a list of var names")
        return ()
    return tuple(value)


# -- the table -----------------------------------------------------------------

_COMBO_NAME = "{{ app }}-{{ env }}-{{ comp }}"

KEYS: tuple[Key[Any], ...] = (
    Key("components", _components, "the comps of this env (a list)", required=True),
    Key("aws_region", _region, "the env's region (or aws_regions)"),
    Key("aws_regions", _regions,
        "the env's regions, a list instead of aws_region: bakes run in the first"),
    Key("aws_account_id", _account, "the env's 12-digit account id (quote it)", required=True),
    Key("aws_profile", _optional(), "named AWS profile for this env (none: the default chain)"),
    Key("aws_role_arn", _optional(_ROLE_RE, "an IAM role ARN"),
        "role assumed for every AWS call of this env"),
    Key("packer_template", _text(NAME_RE, "a template name under packer/"),
        "template name under packer/ (or bundled)", "ubuntu"),
    Key("playbook", _playbook, "the provisioning playbook, a path inside the infra repo",
        "playbooks/{{ app }}/packer-{{ comp }}.yml"),
    Key("source_ami", _optional(AMI_ID_RE, "an AMI id"),
        "base image id (set this or source_ami_filter)"),
    Key("source_ami_filter", _source_filter,
        "base image as {owners: [...], name: pattern}: the newest match"),
    Key("instance_type", _text(), "instance type of the builder instance", "t3.micro"),
    # Packer's own default lets the world reach the builder instance's SSH port.
    Key("ssh_source_cidrs", _cidrs, "who may reach the builder instance's SSH port",
        ["0.0.0.0/0"]),
    Key("ssh_username", _text(_USER_RE, "a user name"), "SSH user of the builder instance",
        "ubuntu"),
    Key("ami_name", _text(_AMI_NAME_RE, "a valid AMI name (3-100 of letters, digits, ()[] ./'@_-)"),
        "name prefix of the new AMI; a UTC timestamp is appended", _COMBO_NAME),
    Key("encrypt_boot", _flag, "encrypt the AMI's EBS snapshots", True),
    Key("kms_key_id", _kms_keys,
        "KMS key for the snapshots, or a mapping of region to key (empty: the account's "
        "default EBS key)", ""),
    Key("launch_template_name", _text(), "launch template that gets a version per release",
        _COMBO_NAME),
    Key("codedeploy_application", _text(), "CodeDeploy application", "{{ app }}"),
    Key("codedeploy_deployment_group", _text(), "CodeDeploy blue/green deployment group",
        _COMBO_NAME),
    Key("deploy_strategy", _deploy_strategy,
        "how `release` rolls the new launch-template version out (blue_green_copy, "
        "blue_green_existing, instance_refresh, none)", DeployStrategy.BLUE_GREEN_COPY.value),
    Key("auto_scaling_group", _text(),
        "instance_refresh: the Auto Scaling group refreshed (an in-place deployment "
        "group's own, when it has one)", _COMBO_NAME),
    Key("refresh_min_healthy_percent", _percent,
        "instance_refresh: share of the group kept in service while instances are replaced",
        90),
    Key("refresh_checkpoints", _checkpoints,
        "instance_refresh: percentages replaced at which the refresh pauses (a list)", []),
    Key("refresh_alarms", _names,
        "instance_refresh: CloudWatch alarms that fail (and roll back) the refresh", []),
    Key("asg_pair", _asg_pair,
        "blue_green_existing: the comp's two Auto Scaling groups [A, B] (none: those "
        "tagged builder:slot and the comp's builder:app/env/comp)"),
    Key("promote_from", _promote_from, "env whose verified AMI `promote` brings to this env"),
    Key("promote_by", _promote_by,
        "how `promote` brings it: copy (share and copy the AMI) or rebake (bake here from "
        "the same inputs; for another partition, or where sharing is forbidden)",
        PromoteBy.COPY.value),
    Key("rebake_env_vars", _var_names,
        "vars whose values are this env's own in a `promote_by: rebake` (e.g. an SSM "
        "prefix): not compared with the source env's", []),
    Key("ami_keep", _whole(1), "AMIs `prune` keeps per comp", 5),
    Key("rebuild_max_age_days", _whole(1), "age in days after which `rebuild` bakes anyway", 30),
    Key("vault_password_ssm_parameter", _optional(),
        "SSM parameter that holds the Ansible vault password"),
    Key("ami_ssm_parameter",
        _optional(_SSM_NAME_RE, "an SSM parameter name (not beginning with aws or ssm)"),
        "SSM String parameter each verified release sets to the AMI id (none: off)"),
    Key("protect_released", _flag,
        "deregistration protection on an AMI a release makes the launch template default",
        True),
    Key("ami_deprecate_after_days", _whole(0),
        "days after a bake or promote's copy when EC2 deprecates the AMI (0: never)", 0),
    Key("ami_keep_launched_days", _whole(0),
        "`prune` keeps an AMI an instance was launched from within this many days", 14),
    Key("records_bucket", _optional(_BUCKET_RE, "an S3 bucket name"),
        "S3 bucket of the env's account that keeps build and release records (none: "
        "only on this machine)"),
)

# The lowest config layer: every key that has a default (required keys have none).
DEFAULTS: dict[str, Any] = {key.name: key.default for key in KEYS if not key.required}
REQUIRED = tuple(key.name for key in KEYS if key.required)


def _one_base_image(values: Mapping[str, Any]) -> tuple[str, str] | None:
    if values["source_ami"] is None and values["source_ami_filter"] is None:
        return "source_ami_filter", "one of source_ami and source_ami_filter is required"
    if values["source_ami"] is not None and values["source_ami_filter"] is not None:
        return "source_ami_filter", "set exactly one of source_ami and source_ami_filter"
    return None


def _role_in_the_account(values: Mapping[str, Any]) -> tuple[str, str] | None:
    """A role in another account would be assumed and written to while every message
    names the configured account."""
    role, account = values["aws_role_arn"] or "", values["aws_account_id"]
    role_account = role.split(":")[4] if _ROLE_RE.fullmatch(role) else ""
    if role_account and account and role_account != account:
        return ("aws_role_arn",
                f"is a role of account {role_account}, but aws_account_id is {account}")
    return None


def _regions_in_one_partition(values: Mapping[str, Any]) -> tuple[str, str] | None:
    """An env is one account, and an account lives in one partition."""
    regions = values["aws_regions"] or ()
    partitions = {partition_of(region) for region in regions}
    if len(partitions) > 1:
        return "aws_regions", (f"mixes partitions ({', '.join(sorted(partitions))}): an env "
                               "is one account, in one partition; make an env per partition")
    return None


def _arns_in_the_partition(values: Mapping[str, Any]) -> tuple[str, str] | None:
    """An ARN of another partition than its region's names nothing the env can use (the
    role: the bake region's; a key: its region's)."""
    regions = values["aws_regions"] or (values["aws_region"] or "",)
    keys = values["kms_key_id"]
    named_in = [("aws_role_arn", values["aws_role_arn"] or "", regions[0])] + [
        ("kms_key_id", keys.for_region(region), region)
        for region in regions if isinstance(keys, KmsKeys)]
    for key, text, region in named_in:
        named, partition = of_arn(text), partition_of(region)
        if named is not None and named != partition:
            return (key, f"is an ARN of partition {named}, but region {region} is in "
                         f"partition {partition}")
    return None


def _pair_needs_its_strategy(values: Mapping[str, Any]) -> tuple[str, str] | None:
    strategy = values["deploy_strategy"]
    if values["asg_pair"] is not None and strategy != DeployStrategy.BLUE_GREEN_EXISTING:
        return "asg_pair", (f"is set but deploy_strategy is {strategy}: only "
                            f"{DeployStrategy.BLUE_GREEN_EXISTING} deploys to a pair")
    return None


def _key_needs_encryption(values: Mapping[str, Any]) -> tuple[str, str] | None:
    if values["kms_key_id"] and not values["encrypt_boot"]:
        return "kms_key_id", "is set but encrypt_boot is false"
    return None


def _one_region_key(values: Mapping[str, Any]) -> tuple[str, str] | None:
    if values["aws_region"] and values["aws_regions"]:
        return "aws_regions", "set one of aws_region and aws_regions, not both"
    if not values["aws_region"] and not values["aws_regions"]:
        return "aws_region", "required (or aws_regions, a list)"
    return None


def _key_per_region(values: Mapping[str, Any]) -> tuple[str, str] | None:
    """A mapping of keys names every region of the env, and no other."""
    keys: KmsKeys = values["kms_key_id"]
    if not keys.by_region:
        return None
    regions = values["aws_regions"] or (values["aws_region"],)
    named = [region for region, _ in keys.by_region]
    if missing := [region for region in regions if region and region not in named]:
        return "kms_key_id", f"names no key for {', '.join(missing)}"
    if extra := [region for region in named if region not in regions]:
        return "kms_key_id", f"names {', '.join(extra)}, not a region of this env"
    return None


# Checks that read several keys, on the parsed values (a key that failed holds its
# placeholder: unset, false or empty).
RULES: tuple[Callable[[Mapping[str, Any]], tuple[str, str] | None], ...] = (
    _one_region_key,
    _key_per_region,
    _one_base_image,
    _role_in_the_account,
    _regions_in_one_partition,
    _arns_in_the_partition,
    _key_needs_encryption,
    _pair_needs_its_strategy,
)


def parse_settings(
    values: Mapping[str, Any], combo: Combo, layout: Layout, report: Callable[[str, str], None]
) -> Settings:
    """Parse every key of one combo's resolved vars into `Settings`.

    Each problem goes to `report(key, message)`; with any reported, the returned value
    holds placeholders and must not be used.
    """
    parsed = {key.name: key.parse(values.get(key.name),
                                  Check(key.name, key.required, combo, layout, report))
              for key in KEYS}
    for rule in RULES:
        if problem := rule(parsed):
            report(*problem)
    # Either key gives both fields: aws_region is the bake region, the first of aws_regions.
    regions = parsed["aws_regions"] or (parsed["aws_region"],)
    return Settings(**{**parsed, "aws_region": regions[0], "aws_regions": regions})


@dataclass(frozen=True)
class KeyList:
    """`builder keys`: the table, as text or JSON."""

    keys: tuple[Key[Any], ...] = KEYS

    exit_code = 0

    def to_json(self) -> list[dict[str, Any]]:
        """A list of {name, default, required, doc}."""
        return [key.to_json() for key in self.keys]

    def to_text(self) -> str:
        """An aligned table of key, default and meaning."""
        return table(("key", "default", "meaning"),
                     [(key.name, key.shown_default(), key.doc) for key in self.keys])
