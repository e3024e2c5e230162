"""AWS partitions: separate AWS worlds (the global one, China, GovCloud) with their own
accounts and ARNs, between which nothing is shared or copied.

An env's partition follows from its region; every ARN builder builds or reads names it.
"""

from __future__ import annotations

import re

AWS, AWS_CN, AWS_US_GOV = "aws", "aws-cn", "aws-us-gov"
# The partition field of an ARN (the ISO partitions follow the same rule as the others).
ARN_PARTITION = r"aws(?:-cn|-us-gov|-iso|-iso-b)?"
_ARN = re.compile(rf"arn:(?P<partition>{ARN_PARTITION}):")


def partition_of(region: str) -> str:
    """The partition a region is in: cn-* is aws-cn, us-gov-* aws-us-gov, else aws."""
    if region.startswith("cn-"):
        return AWS_CN
    if region.startswith("us-gov-"):
        return AWS_US_GOV
    if region.startswith("us-isob-"):
        return "aws-iso-b"
    if region.startswith("us-iso-"):
        return "aws-iso"
    return AWS


def arn(region: str, service: str, account: str, resource: str, *,
        in_region: bool = True) -> str:
    """An ARN in `region`'s partition; `in_region` false leaves its region field empty
    (IAM's ARNs, and an image's, which name no account)."""
    return (f"arn:{partition_of(region)}:{service}:{region if in_region else ''}:"
            f"{account}:{resource}")


def of_arn(text: str) -> str | None:
    """The partition an ARN names, or None when `text` is not an ARN."""
    match = _ARN.match(text)
    return match.group("partition") if match else None
