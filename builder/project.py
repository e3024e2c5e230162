"""One infra repo opened for a command: its layout, config, AWS access and renderer.

The library's entry point; the CLI makes one per run and calls one step with it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload

from builder.config import ConfigLoader, ResolvedVars
from builder.layout import Layout, find_root

if TYPE_CHECKING:
    from builder.aws import Aws, EnvAws
    from builder.fingerprint import FileCache
    from builder.render import Renderer

_T_co = TypeVar("_T_co", covariant=True)
_MAKING = threading.RLock()


class _made_once(cached_property[_T_co]):
    """A cached_property that parallel bakes may reach at the same moment: one thread
    makes the value, all share it (Python 3.12 dropped cached_property's own lock)."""

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...

    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> _T_co: ...

    def __get__(self, instance: object | None, owner: type[Any] | None = None) -> Any:
        if instance is None:
            return self
        with _MAKING:
            return super().__get__(instance, owner)


@dataclass
class Project:
    layout: Layout
    local: bool = False
    overrides: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, root: str | None = None, *, local: bool = False,
             overrides: Mapping[str, str] | None = None) -> Project:
        return cls(Layout(find_root(root)), local, dict(overrides or {}))

    @property
    def root(self) -> Path:
        return self.layout.root

    @_made_once
    def config(self) -> ConfigLoader:
        return ConfigLoader(self.layout, self.overrides)

    def resolve(self, app: str, env: str, comp: str) -> ResolvedVars:
        return self.config.resolve(app, env, comp)

    @_made_once
    def aws(self) -> Aws:
        """Real AWS, or the local emulator with --local (never both, never by accident)."""
        from builder.aws import Aws

        if self.local:
            from builder.local.stack import running_endpoint

            return Aws(local_endpoint=running_endpoint(self.layout))
        return Aws()

    def env_aws(self, resolved: ResolvedVars) -> EnvAws:
        from builder.aws import AwsTarget

        return self.aws.env(AwsTarget.of(resolved.settings))

    @_made_once
    def renderer(self) -> Renderer:
        from builder.packer import installed_version
        from builder.render import Renderer

        return Renderer(self.layout, installed_version())

    @_made_once
    def file_cache(self) -> FileCache:
        """Playbook walks and file digests for this command's fingerprints."""
        from builder.fingerprint import FileCache

        return FileCache()
