"""builder: bake, release and promote AMIs for apps on EC2 Auto Scaling groups.

The CLI (`builder.cli`) and library callers share one core: open a `Project`, then
call a step (config → render → bake → release → deploy).
"""

from builder.errors import BuilderError
from builder.models import Combo, Settings
from builder.project import Project

__all__ = ["BuilderError", "Combo", "Project", "Settings"]
__version__ = "0.1.0"
