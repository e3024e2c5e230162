"""builder: bake, release and promote AMIs for apps on EC2 Auto Scaling groups.

The CLI (`builder.cli`) and library callers share one core: open a `Project`, then
call a step (config → render → bake → release → deploy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from builder.config.models import Combo, Settings
    from builder.errors import BuilderError
    from builder.project import Project

__all__ = ["BuilderError", "Combo", "Project", "Settings"]
__version__ = "0.1.0"

_HOMES = {"BuilderError": "builder.errors", "Combo": "builder.config.models",
          "Settings": "builder.config.models", "Project": "builder.project"}


def __getattr__(name: str) -> Any:
    """Imported on first use, so `builder --help` doesn't load the whole library."""
    if name not in _HOMES:
        raise AttributeError(f"module 'builder' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(_HOMES[name]), name)
