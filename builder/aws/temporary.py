"""The temporary resources of a bake: its SSH key pair and security group (made by
builder, tagged with the run id) and what `builder reap` finds after a crashed run.

Packer makes the instance itself; `run_tags` put the same run-id tag on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from builder.aws.images import TAG_RUN_ID
from builder.aws.session import translate
from builder.errors import AwsError, ConfigError, TimedOut
from builder.polling import poll_until

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.literals import ResourceTypeType
    from mypy_boto3_ec2.type_defs import FilterTypeDef, TagSpecificationTypeDef, TagTypeDef

TAG_STARTED_AT = "builder:started-at"
_DELETE_RETRY_S = 5.0  # while a terminating instance still holds a security group
_LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")


def _tag_specs(resource: ResourceTypeType, tags: Mapping[str, str]
               ) -> list[TagSpecificationTypeDef]:
    return [{"ResourceType": resource,
             "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def import_key_pair(ec2: EC2Client, name: str, public_key: str, tags: Mapping[str, str]) -> None:
    """Import the per-bake public key as a tagged EC2 key pair."""
    with translate(f"importing key pair {name}"):
        ec2.import_key_pair(KeyName=name, PublicKeyMaterial=public_key.encode(),
                            TagSpecifications=_tag_specs("key-pair", tags))


def delete_key_pair(ec2: EC2Client, name: str) -> None:
    """Delete a per-bake key pair."""
    with translate(f"deleting key pair {name}"):
        ec2.delete_key_pair(KeyName=name)


def vpc_for_build(ec2: EC2Client, template_vars: Mapping[str, Any]) -> str:
    """The VPC the builder instance will run in, so its security group is made there:
    the subnet's, the filtered subnets' or VPC's, else the region's default VPC."""
    with translate("finding the VPC for the builder instance"):
        if template_vars.get("subnet_id"):
            subnets = ec2.describe_subnets(SubnetIds=[template_vars["subnet_id"]])["Subnets"]
            return str(subnets[0]["VpcId"])
        subnet_filter = template_vars.get("subnet_filter") or {}
        if subnet_filter:
            subnets = ec2.describe_subnets(Filters=_filters(subnet_filter))["Subnets"]
            if not subnets:
                raise ConfigError(f"subnet_filter: no subnet matches {dict(subnet_filter)}")
            best = max(subnets, key=lambda s: s.get("AvailableIpAddressCount", 0))
            return str(best["VpcId"])
        vpc_filter = template_vars.get("vpc_filter") or {}
        filters: list[FilterTypeDef] = _filters(vpc_filter) if vpc_filter else [
            {"Name": "isDefault", "Values": ["true"]}]
        vpcs = ec2.describe_vpcs(Filters=filters)["Vpcs"]
    if not vpcs:
        raise ConfigError("no default VPC in this region: set subnet_id or subnet_filter")
    return str(vpcs[0]["VpcId"])


def _filters(mapping: Mapping[str, Any]) -> list[FilterTypeDef]:
    return [{"Name": k, "Values": [str(v)]} for k, v in mapping.items()]


def create_security_group(ec2: EC2Client, name: str, vpc_id: str, ssh_cidrs: Sequence[str],
                          tags: Mapping[str, str]) -> str:
    """A group letting `ssh_cidrs` (IPv4 and IPv6) reach port 22; none is left behind
    when the rule can't be added."""
    with translate(f"creating security group {name}"):
        group = ec2.create_security_group(
            GroupName=name, VpcId=vpc_id, Description="builder: SSH to a builder instance",
            TagSpecifications=_tag_specs("security-group", tags))
    group_id = str(group["GroupId"])
    try:
        with translate(f"allowing SSH into security group {name}"):
            ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[{
                "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                "IpRanges": [{"CidrIp": c} for c in ssh_cidrs if ":" not in c],
                "Ipv6Ranges": [{"CidrIpv6": c} for c in ssh_cidrs if ":" in c]}])
    except AwsError:
        with suppress(AwsError):  # the rule's error is the one to show; reap gets the rest
            delete_security_group(ec2, group_id)
        raise
    return group_id


def delete_security_group(ec2: EC2Client, group_id: str, *, wait_s: float = 300) -> None:
    """Delete, waiting while a terminating instance still holds the group; past `wait_s`
    the error is AWS's DependencyViolation."""
    held: list[AwsError] = []

    def deleted() -> bool | None:
        try:
            with translate(f"deleting security group {group_id}"):
                ec2.delete_security_group(GroupId=group_id)
        except AwsError as exc:
            if exc.code == "InvalidGroup.NotFound":
                return True
            if exc.code != "DependencyViolation":
                raise
            held.append(exc)
            return None
        return True

    try:
        poll_until(deleted, timeout_s=wait_s, interval_s=_DELETE_RETRY_S,
                   what=f"deleting security group {group_id}")
    except TimedOut:
        raise held[-1] from None


@dataclass(frozen=True)
class Leftovers:
    """What crashed runs left in one account and region."""

    instances: tuple[str, ...]
    security_groups: tuple[str, ...]
    key_pairs: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.instances or self.security_groups or self.key_pairs)


def find_leftovers(ec2: EC2Client, older_than: datetime) -> Leftovers:
    """Resources tagged with a builder run id, started before `older_than`."""
    run_filter: list[FilterTypeDef] = [{"Name": "tag-key", "Values": [TAG_RUN_ID]}]

    def old(tags: Sequence[TagTypeDef], fallback: datetime | None) -> bool:
        values = {t["Key"]: t["Value"] for t in tags}
        started = values.get(TAG_STARTED_AT)
        when = datetime.fromisoformat(started) if started else fallback
        return when is not None and when < older_than

    with translate("finding leftovers of crashed bakes"):
        reservations = ec2.describe_instances(Filters=[
            *run_filter, {"Name": "instance-state-name", "Values": list(_LIVE_STATES)}])
        instances = [i for r in reservations["Reservations"] for i in r["Instances"]
                     if old(i.get("Tags", []), i.get("LaunchTime"))]
        groups = [g for g in ec2.describe_security_groups(Filters=run_filter)["SecurityGroups"]
                  if old(g.get("Tags", []), None)]
        keys = [k for k in ec2.describe_key_pairs(Filters=run_filter)["KeyPairs"]
                if old(k.get("Tags", []), k.get("CreateTime"))]
    return Leftovers(tuple(i["InstanceId"] for i in instances),
                     tuple(g["GroupId"] for g in groups), tuple(k["KeyName"] for k in keys))


def remove_leftovers(ec2: EC2Client, leftovers: Leftovers) -> None:
    """Remove what crashed bakes left: instances first (and wait), then groups and key pairs."""
    if leftovers.instances:
        with translate("terminating leftover builder instances"):
            ec2.terminate_instances(InstanceIds=list(leftovers.instances))
            ec2.get_waiter("instance_terminated").wait(
                InstanceIds=list(leftovers.instances), WaiterConfig={"Delay": 5})
    for group_id in leftovers.security_groups:
        delete_security_group(ec2, group_id)
    for name in leftovers.key_pairs:
        delete_key_pair(ec2, name)

