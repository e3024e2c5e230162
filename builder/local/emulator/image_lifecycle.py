"""What EC2 keeps about an image's life that moto 5.2.5 lacks: deregistration
protection, a deprecation time and when an instance was last launched from it.

- EnableImageDeregistrationProtection / DisableImageDeregistrationProtection set the
  image's `DeregistrationProtection` (`enabled-with-cooldown`, `enabled-without-cooldown`,
  `disabled`; DescribeImages shows it), and DeregisterImage of a protected image fails.
  The error: AWS's API reference for DeregisterImage names no code of its own for this
  (only the common client errors); the public emulators and tools that model it answer
  `OperationNotPermitted` (an EC2 common client error) "The image has deregistration
  protection enabled.", which is what this answers. The 24-hour cooldown after
  disabling a protection enabled with one is not modelled: disabling takes it off now.
- EnableImageDeprecation / DisableImageDeprecation set and clear `DeprecationTime`
  (ISO 8601, to the minute as EC2 rounds it).
- RunInstances (an Auto Scaling group's launches go through it too) sets the image's
  `LastLaunchedTime`, which DescribeImages shows (and `lastLaunchedTime` of
  DescribeImageAttribute in EC2; builder reads the DescribeImages field).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from moto.core.parse import default_timestamp_parser
from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError, InvalidAMIIdError
from moto.ec2.models.amis import AmiBackend
from moto.ec2.models.instances import InstanceBackend

from builder.local.emulator.ec2_images import shared_images
from builder.local.emulator.moto_internals import original

PROTECTED_CODE = "OperationNotPermitted"
PROTECTED_MESSAGE = "The image has deregistration protection enabled."


def _own_image(backend: Any, ami_id: str) -> Any:
    image = backend.amis.get(ami_id)
    if image is None:
        raise InvalidAMIIdError(ami_id)
    return image


def deregister_image(self: Any, ami_id: str) -> None:
    """EC2 refuses to deregister a protected image."""
    image = self.amis.get(ami_id)
    if image is not None and image.deregistration_protection != "disabled":
        raise EC2ClientError(PROTECTED_CODE, PROTECTED_MESSAGE)
    original(AmiBackend, "deregister_image")(self, ami_id)


def enable_protection_response(self: Any) -> ActionResult:
    """EnableImageDeregistrationProtection, with or without the cooldown."""
    self.error_on_dryrun()
    image = _own_image(self.ec2_backend, self._get_param("ImageId"))
    cooldown = bool(self._get_bool_param("WithCooldown", False))
    image.deregistration_protection = ("enabled-with-cooldown" if cooldown
                                       else "enabled-without-cooldown")
    return ActionResult({"Return": "true"})


def disable_protection_response(self: Any) -> ActionResult:
    """DisableImageDeregistrationProtection: off at once (no cooldown modelled)."""
    self.error_on_dryrun()
    _own_image(self.ec2_backend, self._get_param("ImageId")).deregistration_protection = (
        "disabled")
    return ActionResult({"Return": "true"})


def enable_deprecation_response(self: Any) -> ActionResult:
    """EnableImageDeprecation: DeprecateAt, to the minute."""
    self.error_on_dryrun()
    image = _own_image(self.ec2_backend, self._get_param("ImageId"))
    at = self._get_param("DeprecateAt")  # moto parses the request's timestamps
    at = at if isinstance(at, datetime) else default_timestamp_parser(str(at))
    at = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
    image.deprecation_time = f"{at.replace(second=0, microsecond=0):%Y-%m-%dT%H:%M:%S}.000Z"
    return ActionResult({"Return": True})


def disable_deprecation_response(self: Any) -> ActionResult:
    """DisableImageDeprecation: the deprecation time cleared."""
    self.error_on_dryrun()
    _own_image(self.ec2_backend, self._get_param("ImageId")).deprecation_time = None
    return ActionResult({"Return": True})


def run_instances(self: Any, image_id: str, count: int, user_data: Any,
                  security_group_names: list[str], **kwargs: Any) -> Any:
    """moto's RunInstances, noting the launch on the image (its owner's, when shared)."""
    reservation = original(InstanceBackend, "run_instances")(
        self, image_id, count, user_data, security_group_names, **kwargs)
    launched = {instance.image_id for instance in reservation.instances}
    for image in [*self.amis.values(), *shared_images(self)]:
        if image.id in launched:
            image.last_launched_time = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
    return reservation
