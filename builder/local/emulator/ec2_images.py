"""Images across accounts, as EC2 shares them, and the base images a vendor publishes.

moto keeps each account's images to itself; here an account also sees other accounts'
images in the same region that are public or carry a launch permission for it
(describe_images by id, Owners, ExecutableUsers), and may copy them when it may also
read their snapshots (create-volume permission) and, for an encrypted snapshot, use its
KMS key (a grant or the key policy). Only the owner may change or read an image's
attributes. copy_image honours Encrypted/KmsKeyId and, like EC2, fails the copy (not
the call) when it can't use the key. Nothing crosses a partition (builder.aws.partition):
no copy from another partition's region, no launch permission for an account that
lives in another partition.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError, InvalidAMIIdError, MalformedAMIIdError
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.utils import generic_filter, random_ami_id

from builder.aws.partition import partition_of
from builder.local.emulator.kms import is_default_ebs_key, may_use_key, usable_key_arn
from builder.local.emulator.moto_internals import original

# What AWS reports when a copy can't use the source snapshot's key (EBS user guide,
# "Copy an Amazon EBS snapshot": the copy fails silently with this state message).
KEY_NOT_ACCESSIBLE = "Given key ID is not accessible"


def shared_images(backend: Any) -> Iterator[Any]:
    """Other accounts' images in the backend's region that its account may launch."""
    me = backend.account_id
    for account_id, regions in list(ec2_backends.items()):
        # dict.get: looking must not create a backend for every account and region
        other = dict.get(regions, backend.region_name)
        if account_id == me or other is None:
            continue
        for image in list(other.amis.values()):
            if image.is_public or {"UserId": me} in image.launch_permissions:
                yield image


def describe_images(self: Any, ami_ids: list[str] | None = None,
                    filters: dict[str, Any] | None = None,
                    exec_users: list[str] | None = None,
                    owners: list[str] | None = None) -> list[Any]:
    """EC2's DescribeImages over the account's own images and those it may launch.

    ExecutableUsers follows EC2: an account id (or `self`) selects images with an
    explicit launch permission for it, `all` the public ones.
    """
    images = [*self.amis.values(), *shared_images(self)]
    if ami_ids:
        malformed = [ami_id for ami_id in ami_ids if not ami_id.startswith("ami-")]
        if malformed:
            raise MalformedAMIIdError(malformed)
        images = [image for image in images if image.id in ami_ids]
        if not images and not any(ami_id in self.deleted_amis for ami_id in ami_ids):
            raise InvalidAMIIdError(ami_ids)
    if exec_users:
        users = {self.account_id if user == "self" else user for user in exec_users}
        images = [image for image in images
                  if ("all" in users and image.is_public)
                  or any(lp.get("UserId") in users for lp in image.launch_permissions)]
    if owners:
        wanted = {self.account_id if owner == "self" else owner for owner in owners}
        images = [image for image in images
                  if image.owner_id in wanted or image.owner_alias in wanted]
    return generic_filter(filters, images) if filters else images


def _other_partition(account_id: str, partition: str) -> bool:
    """Whether the account lives in another partition: every region it has used here is
    in one other than `partition` (an AWS account belongs to one partition)."""
    regions = dict.get(ec2_backends, account_id)  # looking makes no backend
    used = {partition_of(region) for region in dict.keys(regions)} if regions else set()
    return bool(used) and partition not in used


def _require_own_image(backend: Any, ami_id: str) -> None:
    """EC2's answer to a call only an image's owner may make: AuthFailure for another
    account's image this one may see, not-found for the rest (moto: KeyError, HTTP 500)."""
    if ami_id not in backend.amis:
        if any(image.id == ami_id for image in shared_images(backend)):
            raise EC2ClientError("AuthFailure", f"Not authorized for image:{ami_id}")
        raise InvalidAMIIdError(ami_id)


def describe_image_attribute(self: Any, ami_id: str, attribute_name: str) -> Any:
    """Only the owner reads an image's attributes."""
    _require_own_image(self, ami_id)
    return original(AmiBackend, "describe_image_attribute")(self, ami_id, attribute_name)


def modify_image_attribute(self: Any, ami_id: str, launch_permissions_to_add: list[Any],
                           launch_permissions_to_remove: list[Any]) -> None:
    """Only the owner changes who may launch an image; an image encrypted with the
    account's AWS-managed key can't be shared (EC2 refuses it too)."""
    _require_own_image(self, ami_id)
    partition = partition_of(self.region_name)
    for permission in launch_permissions_to_add:
        account = permission.get("UserId")
        if account and _other_partition(account, partition):
            # AWS's documented error code for an attribute value it rejects; its exact
            # message for an account of another partition is not documented.
            raise EC2ClientError("InvalidAMIAttributeItemValue",
                                 f'Invalid attribute item value "{account}" for userId '
                                 f"item type: not an account of partition {partition}.")
    snapshot = self.amis[ami_id].ebs_snapshot
    if launch_permissions_to_add and is_default_ebs_key(snapshot.kms_key_id, self.region_name,
                                                        self.account_id):
        raise EC2ClientError("InvalidParameter", "Snapshots encrypted with the AWS Managed "
                             "CMK can't be shared. Specify another snapshot.")
    original(AmiBackend, "modify_image_attribute")(
        self, ami_id, launch_permissions_to_add, launch_permissions_to_remove)


def copy_image(self: Any, source_image_id: str, source_region: str, name: str | None = None,
               description: str | None = None, encrypted: bool = False,
               kms_key_id: str | None = None) -> Any:
    """CopyImage as EC2 does it, also from another account.

    Another account's image needs its snapshot readable by this account, else EC2
    refuses the call (InvalidRequest). An encrypted snapshot also needs its key usable
    by this account; without that EC2 accepts the copy and fails it afterwards (the
    snapshot copy ends in `error` with "Given key ID is not accessible", the image in
    `failed`), so that is what happens here too. The same goes for a KmsKeyId this
    account can't encrypt with (no such key or alias, disabled, in another region, or
    another account's without a grant): EC2 checks the key only after accepting the
    copy (API reference, CopyImage KmsKeyId: "if you specify an identifier that is not
    valid, the action can appear to complete, but eventually fails").

    A SourceRegion of another partition is refused: EC2 copies only within a partition.
    AWS documents no error for it; InvalidParameterValue (its code for a parameter value
    it rejects) stands in.
    """
    if partition_of(source_region) != partition_of(self.region_name):
        raise EC2ClientError("InvalidParameterValue",
                             f"Invalid value '{source_region}' for SourceRegion: images are "
                             f"not copied from partition {partition_of(source_region)} to "
                             f"{partition_of(self.region_name)}.")
    source = ec2_backends[self.account_id][source_region].describe_images(
        ami_ids=[source_image_id])[0]
    source_snapshot = source.ebs_snapshot
    foreign = source.owner_id != self.account_id
    if foreign and not _may_read(source_snapshot, self.account_id):
        raise EC2ClientError("InvalidRequest",
                             "You do not have permission to access the storage of this ami")
    copy: Any = Ami(self, random_ami_id(), source_ami=source, name=name, description=description)
    copy.root_device_type = source.root_device_type
    copy.root_device_name = source.root_device_name
    copy.boot_mode = source.boot_mode
    self.amis[copy.id] = copy
    snapshot = copy.ebs_snapshot
    if encrypted or kms_key_id or source_snapshot.encrypted:
        # Copies of encrypted snapshots stay encrypted; without KmsKeyId the copy takes the
        # source key when it may (same account and region), else the account's EBS key.
        same_home = not foreign and source_region == self.region_name
        key = kms_key_id or (source_snapshot.kms_key_id if same_home else None)
        snapshot.encrypted = True
        snapshot.kms_key_id = (usable_key_arn(key, self.region_name, self.account_id) if key
                               else self._create_default_encryption_key())
        usable = snapshot.kms_key_id is not None and (
            not source_snapshot.encrypted or not foreign
            or may_use_key(source_snapshot.kms_key_id, self.account_id))
        if not usable:
            copy.state = "failed"
            copy.state_reason = {"Code": "Client.InvalidKMSKey.InvalidState",
                                 "Message": f"Copy image failed: {KEY_NOT_ACCESSIBLE}"}
            snapshot.status = "error"
            snapshot.state_message = KEY_NOT_ACCESSIBLE
    return copy


def copy_image_response(self: Any) -> ActionResult:
    """CopyImage's request with Encrypted and KmsKeyId handed to `copy_image`."""
    self.error_on_dryrun()
    image = self.ec2_backend.copy_image(
        self._get_param("SourceImageId"), self._get_param("SourceRegion"),
        self._get_param("Name"), self._get_param("Description"),
        encrypted=bool(self._get_bool_param("Encrypted", False)),
        kms_key_id=self._get_param("KmsKeyId"))
    return ActionResult({"ImageId": image.id})


def block_device_mappings(self: Any) -> list[dict[str, Any]]:
    """moto's mapping, plus the snapshot's encryption (Packer and promote read it)."""
    return [{"DeviceName": self.root_device_name,
             "Ebs": {"SnapshotId": self.ebs_snapshot.id, "VolumeSize": 15,
                     "DeleteOnTermination": True, "VolumeType": "gp3",
                     "Encrypted": bool(self.ebs_snapshot.encrypted)}}]


def _may_read(snapshot: Any, account_id: str) -> bool:
    return (account_id in snapshot.create_volume_permission_userids
            or "all" in snapshot.create_volume_permission_groups)


def publish_image(owner: str, region: str, name: str, created: datetime, *,
                  image_id: str | None = None, public: bool = True) -> tuple[Any, bool]:
    """An image of `owner` (a vendor account such as Canonical's), launchable and
    copyable by every account when public. Returns (image, made); an image of that
    name (or id) already there is returned as is."""
    backend = ec2_backends[owner][region]
    for existing in [*backend.amis.values(), *shared_images(backend)]:
        if existing.name == name or existing.id == image_id:
            return existing, False
    image: Any = Ami(backend, image_id or random_ami_id(), name=name, owner_id=owner,
                     public=public, virtualization_type="hvm", architecture="x86_64",
                     root_device_type="ebs", root_device_name="/dev/sda1",
                     creation_date=created, description=f"{name} (local base image)")
    if public:
        image.ebs_snapshot.create_volume_permission_groups.add("all")
    backend.amis[image.id] = image
    return image, True


def set_creation_date(account: str, region: str, image_id: str, created: datetime) -> Any:
    """Date an account's image as made at `created`, so tests order images without waiting
    (KeyError: no such image)."""
    regions = dict.get(ec2_backends, account)  # looking makes no backend
    backend = dict.get(regions, region) if regions is not None else None
    image = backend.amis.get(image_id) if backend is not None else None
    if image is None:
        raise KeyError(f"no image {image_id} in {account} {region}")
    image.creation_date = created
    return image
