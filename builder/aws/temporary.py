"""The temporary resources of a bake: its SSH key pair and security group (made by
builder, tagged with the run id) and what `builder reap` finds after a crashed run.

Packer makes the instance itself; `run_tags` put the same run-id tag on it. A failed
bake's build host kept for debugging (`bake --keep-on-failure`) carries
`builder:kept-for-debug` and `builder:kept-until` on its instance, key pair and security
group: `reap` leaves them until that time (or until asked for that run).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from builder.aws.images import (
    TAG_BUILT_AT,
    TAG_KEPT_FOR_DEBUG,
    TAG_KEPT_UNTIL,
    TAG_OWNER,
    TAG_RUN_ID,
    TAG_STATUS,
    AmiStatus,
    Image,
    builder_images,
    delete_snapshot,
    deregister,
    describe,
    owner_gone,
)
from builder.aws.session import EnvAws, translate
from builder.aws.sharing import LeftShare, left_shares, remove_left_share
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


def import_key_pair(ec2: EC2Client, name: str, public_key: str, tags: Mapping[str, str]) -> str:
    """Import the per-bake public key as a tagged EC2 key pair; its id."""
    with translate(f"importing key pair {name}"):
        reply = ec2.import_key_pair(KeyName=name, PublicKeyMaterial=public_key.encode(),
                                    TagSpecifications=_tag_specs("key-pair", tags))
    return str(reply.get("KeyPairId", ""))


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


def run_instances(ec2: EC2Client, run_id: str) -> list[str]:
    """The live instances of one run (Packer's, found by the run-id tag it put on them)."""
    with translate(f"finding the instances of run {run_id}"):
        reply = ec2.describe_instances(Filters=[
            {"Name": f"tag:{TAG_RUN_ID}", "Values": [run_id]},
            {"Name": "instance-state-name", "Values": list(_LIVE_STATES)}])
    return [i["InstanceId"] for r in reply["Reservations"] for i in r["Instances"]]


def terminate_instances(ec2: EC2Client, instance_ids: Sequence[str]) -> None:
    """Terminate instances and wait until they are gone (their security group is then
    free to delete)."""
    if not instance_ids:
        return
    with translate(f"terminating builder instances {', '.join(instance_ids)}"):
        ec2.terminate_instances(InstanceIds=list(instance_ids))
        ec2.get_waiter("instance_terminated").wait(
            InstanceIds=list(instance_ids), WaiterConfig={"Delay": 5})


def mark_kept(ec2: EC2Client, resource_ids: Sequence[str], run_id: str, until: str) -> None:
    """Tag a failed bake's instance, key pair and security group as kept for debugging
    until `until` (ISO time): `reap` leaves them until then."""
    with translate(f"tagging the build host of run {run_id} as kept"):
        ec2.create_tags(Resources=list(resource_ids), Tags=[
            {"Key": TAG_KEPT_FOR_DEBUG, "Value": run_id}, {"Key": TAG_KEPT_UNTIL, "Value": until}])


@dataclass(frozen=True)
class KeptResource:
    """A resource of a failed bake kept for debugging, not yet expired."""

    kind: str  # instance, security_group or key_pair
    id: str
    run_id: str
    until: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.id, "run_id": self.run_id, "until": self.until}


@dataclass(frozen=True)
class Leftovers:
    """What crashed runs left in one account and region."""

    instances: tuple[str, ...]
    security_groups: tuple[str, ...]
    key_pairs: tuple[str, ...]
    images: tuple[Image, ...] = ()  # `building` AMIs of dead runs, Packer's temporary ones
    snapshots: tuple[str, ...] = ()  # a dead run's snapshots no AMI holds any more
    shares: tuple[LeftShare, ...] = ()  # promotions' shares and grants on source AMIs
    kept: tuple[KeptResource, ...] = ()  # kept for debugging until their time: not removed

    @property
    def empty(self) -> bool:
        return not (self.instances or self.security_groups or self.key_pairs or self.images
                    or self.snapshots or self.shares)

    def by_kind(self) -> dict[str, list[str]]:
        return {"instances": list(self.instances), "security_groups": list(self.security_groups),
                "key_pairs": list(self.key_pairs),
                "building_amis": [i.id for i in self.images if i.tags],
                "packer_temporary_amis": [i.id for i in self.images if not i.tags],
                "snapshots": [s for i in self.images for s in i.snapshot_ids]
                             + list(self.snapshots),
                "shares": [s.label for s in self.shares]}


# Packer's temporary (unencrypted) AMI when it encrypts: a random 7-character name, no
# tags, no description. Only ever found by age: nothing on it says whose run it was.
_PACKER_TEMPORARY_NAME = re.compile(r"[A-Za-z0-9]{7}")


def find_leftovers(ec2: EC2Client, older_than: datetime, apps: Sequence[str] = (), *,
                   now: datetime, release_run: str | None = None) -> Leftovers:
    """Resources tagged with a builder run id whose run started before `older_than` or
    whose owning builder process (on this host) is gone; Packer's temporary AMIs older
    than that; promotions' shares (recorded on the source AMIs of `apps`) likewise.
    A build host kept for debugging goes only once its kept-until time is before `now`,
    or when its run is `release_run`; until then it is listed in `kept`."""
    run_filter: list[FilterTypeDef] = [{"Name": "tag-key", "Values": [TAG_RUN_ID]}]
    kept: list[KeptResource] = []

    def dead(tags: Sequence[TagTypeDef], fallback: datetime | None,
             kind_and_id: tuple[str, str] | None = None) -> bool:
        values = {t["Key"]: t["Value"] for t in tags}
        kept_until = values.get(TAG_KEPT_UNTIL)
        if kept_until is not None:  # its owner is gone on purpose: only its time counts
            kept_by = values.get(TAG_KEPT_FOR_DEBUG, "")
            if kept_by == release_run or _before(kept_until, now):
                return True
            if kind_and_id is not None:
                kept.append(KeptResource(*kind_and_id, kept_by, kept_until))
            return False
        if owner_gone(values.get(TAG_OWNER)):
            return True
        started = values.get(TAG_STARTED_AT) or values.get(TAG_BUILT_AT)
        when = datetime.fromisoformat(started) if started else fallback
        return when is not None and when < older_than

    with translate("finding leftovers of crashed runs"):
        reservations = ec2.describe_instances(Filters=[
            *run_filter, {"Name": "instance-state-name", "Values": list(_LIVE_STATES)}])
        instances = [i for r in reservations["Reservations"] for i in r["Instances"]
                     if dead(i.get("Tags", []), i.get("LaunchTime"),
                             ("instance", i["InstanceId"]))]
        groups = [g for g in ec2.describe_security_groups(Filters=run_filter)["SecurityGroups"]
                  if dead(g.get("Tags", []), None, ("security_group", g["GroupId"]))]
        keys = [k for k in ec2.describe_key_pairs(Filters=run_filter)["KeyPairs"]
                if dead(k.get("Tags", []), k.get("CreateTime"), ("key_pair", k["KeyName"]))]
        snapshots = [s for page in ec2.get_paginator("describe_snapshots").paginate(
            OwnerIds=["self"], Filters=[{"Name": f"tag:{TAG_STATUS}",
                                         "Values": [AmiStatus.BUILDING]}])
            for s in page["Snapshots"] if dead(s.get("Tags", []), s.get("StartTime"))]
    own = describe(ec2, owners=["self"])
    building = [i for i in own if i.tags.get(TAG_STATUS) == AmiStatus.BUILDING
                and dead([{"Key": k, "Value": v} for k, v in i.tags.items()], i.created)]
    temporary = [i for i in own if not i.tags and _PACKER_TEMPORARY_NAME.fullmatch(i.name)
                 and not i.description and i.created < older_than]
    held = {s for i in own for s in i.snapshot_ids}
    shares = [left for image in (builder_images(ec2, apps) if apps else [])
              for left in left_shares(image)
              if owner_gone(left.owner) or _before(left.started_at, older_than)]
    return Leftovers(tuple(i["InstanceId"] for i in instances),
                     tuple(g["GroupId"] for g in groups), tuple(k["KeyName"] for k in keys),
                     tuple(building + temporary),
                     tuple(s["SnapshotId"] for s in snapshots if s["SnapshotId"] not in held),
                     tuple(shares), tuple(kept))


def _before(when: str, cutoff: datetime) -> bool:
    try:
        return datetime.fromisoformat(when) < cutoff
    except ValueError:
        return True  # a record that can't be read is no live run's


def remove_leftovers(source: EnvAws, leftovers: Leftovers) -> None:
    """Remove what crashed runs left: instances first (and wait), then groups, key pairs,
    incomplete AMIs and their snapshots, and promotions' shares."""
    ec2 = source.client("ec2")
    terminate_instances(ec2, leftovers.instances)
    for group_id in leftovers.security_groups:
        delete_security_group(ec2, group_id)
    for name in leftovers.key_pairs:
        delete_key_pair(ec2, name)
    for image in leftovers.images:
        deregister(ec2, image)
    for snapshot in leftovers.snapshots:
        delete_snapshot(ec2, snapshot)
    for share in leftovers.shares:
        remove_left_share(source, share)
