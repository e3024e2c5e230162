"""EC2 tags in the emulator: one resource's tags read straight from the region's tag
table (moto scans every tag of the region for each resource, with a regex per tag, so
a describe or filter over hundreds of tagged images took seconds)."""

from __future__ import annotations

from typing import Any

from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix


def get_tags(self: Any) -> list[dict[str, str]]:
    """TaggedEC2Resource.get_tags: what moto's describe_tags(resource-id=[id]) answers,
    in the same order and shape."""
    resource_id = getattr(self, "id", None)
    if not resource_id:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
    return [{"resource_id": resource_id, "key": key, "value": value, "resource_type": kind}
            for key, value in self.ec2_backend.tags.get(resource_id, {}).items()]
