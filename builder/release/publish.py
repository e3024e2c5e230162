"""What a release tells the world besides the launch template: deregistration protection
on the AMI it makes the default (`protect_released`), and the SSM parameter a verified
release points at the AMI (`ami_ssm_parameter`); both undone when the release rolls back.
"""

from __future__ import annotations

from collections.abc import Callable

from builder.aws import EnvAws, fleet, images, parameters
from builder.aws.parameters import Publication
from builder.config.models import Combo, Settings
from builder.errors import AwsError


def protect(env_aws: EnvAws, settings: Settings, image: images.Image) -> bool:
    """Protect an AMI about to become the launch template's default; True when this
    call turned the protection on (so a rollback knows to take it off again)."""
    if not settings.protect_released or image.protected:
        return False
    images.set_protection(env_aws.client("ec2"), image.id, True)
    return True


def verified(env_aws: EnvAws, settings: Settings, image: images.Image) -> Publication | None:
    """Point the env's `ami_ssm_parameter` at a verified AMI (None: not set)."""
    if not settings.ami_ssm_parameter:
        return None
    return parameters.publish(env_aws.client("ssm"), settings.ami_ssm_parameter, image.id)


def rolled_back(env_aws: EnvAws, settings: Settings, combo: Combo, failed: images.Image, *,
                unprotect: bool, template_id: str, previous: int | None) -> list[str]:
    """After a rollback: the SSM parameter no longer names the failed AMI, the failed AMI
    loses the protection this release gave it, and the AMI the default went back to is
    protected. Each step is tried; what was done (or could not be) is returned for the
    error message, so none of them hides the deployment's failure."""
    done: list[str] = []
    ec2 = env_aws.client("ec2")

    def attempt(what: str, step: Callable[[], str | None]) -> None:
        try:
            said = step()
        except AwsError as exc:
            done.append(f"could not {what}: {exc.message}")
            return
        if said:
            done.append(said)

    if settings.ami_ssm_parameter:
        name = settings.ami_ssm_parameter

        def revert() -> str | None:
            back = parameters.revert(env_aws.client("ssm"), name, failed.id)
            if back is None:
                return None
            return (f"SSM parameter {name} back to {back.value}" if back.value
                    else f"SSM parameter {name} deleted (it held no other AMI)")

        attempt(f"revert SSM parameter {name}", revert)
    if unprotect:
        def unprotect_failed() -> str:
            images.set_protection(ec2, failed.id, False)
            return f"{failed.id}'s deregistration protection removed"

        attempt(f"remove {failed.id}'s deregistration protection", unprotect_failed)
    if settings.protect_released and previous is not None:
        def protect_previous() -> str | None:
            back = fleet.version(ec2, template_id=template_id, number=str(previous))
            found = images.images_by_id(ec2, [back.image_id]).get(back.image_id)
            # Only the comp's own AMIs: a template's first version may name a base image.
            if found is None or found.protected or not found.belongs_to(combo):
                return None
            images.set_protection(ec2, found.id, True)
            return f"{found.id} (the default again) protected from deregistration"

        attempt("protect the previous AMI", protect_previous)
    return done
