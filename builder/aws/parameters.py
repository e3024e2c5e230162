"""SSM parameters that name AMIs: the one a verified release publishes
(`ami_ssm_parameter`) and every one `prune` must not pull the AMI from under."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from builder.aws.session import translate
from builder.errors import AwsError

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

# What an AMI id looks like inside a parameter's value (a StringList holds several).
_AMI_IN_VALUE = re.compile(r"\bami-[0-9a-f]{8,17}\b")
_GET_BATCH = 10  # GetParameters takes at most 10 names
_NOT_FOUND = "ParameterNotFound"


@dataclass(frozen=True)
class Publication:
    """What a release did to its SSM parameter: `previous` is None when it didn't exist."""

    name: str
    value: str
    previous: str | None

    @property
    def changed(self) -> bool:
        return self.previous != self.value

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "value": self.value, "previous": self.previous,
                "changed": self.changed}

    def to_text(self) -> str:
        if not self.changed:
            return f"SSM parameter {self.name}: already {self.value}"
        return f"SSM parameter {self.name}: {self.value} (was {self.previous or 'unset'})"


def current(ssm: SSMClient, name: str) -> str | None:
    """The parameter's value, or None when it doesn't exist."""
    try:
        with translate(f"reading SSM parameter {name}"):
            return ssm.get_parameter(Name=name)["Parameter"].get("Value")
    except AwsError as exc:
        if exc.code == _NOT_FOUND:
            return None
        raise


def publish(ssm: SSMClient, name: str, ami_id: str) -> Publication:
    """Set the String parameter `name` to `ami_id` (unchanged when it already is), with
    SSM's AMI data type so launch templates can resolve it."""
    previous = current(ssm, name)
    if previous != ami_id:
        with translate(f"setting SSM parameter {name} to {ami_id}"):
            ssm.put_parameter(Name=name, Value=ami_id, Type="String", Overwrite=True,
                              DataType="aws:ec2:image")
    return Publication(name, ami_id, previous)


def revert(ssm: SSMClient, name: str, ami_id: str) -> Publication | None:
    """If the parameter names `ami_id`, put back the value it held before (its history:
    the newest other value), or delete it when it never held another. None: the
    parameter doesn't name `ami_id` and is left alone."""
    if current(ssm, name) != ami_id:
        return None
    earlier = [value for value in _history(ssm, name) if value != ami_id]
    if earlier:
        with translate(f"setting SSM parameter {name} back to {earlier[-1]}"):
            ssm.put_parameter(Name=name, Value=earlier[-1], Type="String", Overwrite=True,
                              DataType="aws:ec2:image")
        return Publication(name, earlier[-1], ami_id)
    with translate(f"deleting SSM parameter {name}"):
        ssm.delete_parameter(Name=name)
    return Publication(name, "", ami_id)


def _history(ssm: SSMClient, name: str) -> Iterator[str]:
    """The parameter's values, oldest first."""
    with translate(f"reading SSM parameter {name}'s history"):
        for page in ssm.get_paginator("get_parameter_history").paginate(Name=name):
            for version in page["Parameters"]:
                yield version.get("Value", "")


def ami_references(ssm: SSMClient) -> dict[str, list[str]]:
    """AMI id → the names of the account's parameters (in the client's region) whose
    value holds it. Plain String and StringList parameters are read (SecureStrings are
    not: builder neither writes AMI ids there nor may decrypt them): their names 50 a
    page, then their values 10 a call."""
    names: list[str] = []
    with translate("listing SSM parameters"):
        pages = ssm.get_paginator("describe_parameters").paginate(
            ParameterFilters=[{"Key": "Type", "Values": ["String", "StringList"]}],
            PaginationConfig={"PageSize": 50})
        names = [p["Name"] for page in pages for p in page["Parameters"] if "Name" in p]
    found: dict[str, list[str]] = {}
    for start in range(0, len(names), _GET_BATCH):
        batch = names[start:start + _GET_BATCH]
        with translate(f"reading SSM parameters {batch[0]}..."):
            parameters = ssm.get_parameters(Names=batch)["Parameters"]
        for parameter in parameters:
            for ami_id in _AMI_IN_VALUE.findall(parameter.get("Value", "")):
                found.setdefault(ami_id, []).append(parameter.get("Name", ""))
    return found
