"""The pipelines around bake and release: promote, rebuild, prune and status."""

from collections.abc import Callable

ProgressFn = Callable[[str, str], None]
