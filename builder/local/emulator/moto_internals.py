"""The two ways the emulator reaches into moto: replacing an attribute of one of its
classes or modules while keeping the original at hand, and listing the backends that
exist. The patches themselves are listed in builder.local.emulator.patches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

_ORIGINAL: dict[str, Any] = {}


@dataclass(frozen=True)
class Patch:
    """`owner.<name>` (a moto class or module) becomes `new`; `why` says what moto does
    differently from AWS there."""

    owner: Any
    name: str
    new: Any
    why: str

    @property
    def key(self) -> str:
        return f"{self.owner.__name__}.{self.name}"


def install(patch: Patch) -> None:
    """Put the patch in place, keeping the original for `original`; idempotent."""
    if patch.key not in _ORIGINAL:
        _ORIGINAL[patch.key] = getattr(patch.owner, patch.name, None)
    setattr(patch.owner, patch.name, patch.new)


def original(owner: Any, name: str) -> Callable[..., Any]:
    """What `owner.<name>` was before its patch (for a patch that builds on it)."""
    found: Callable[..., Any] = _ORIGINAL[f"{owner.__name__}.{name}"]
    return found


def backends(service: Any) -> Iterator[tuple[str, str, Any]]:
    """(account, region, backend) of a moto service that exist (none is made)."""
    yield from service.iter_backends()
