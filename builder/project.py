"""One infra repo opened for a command: its layout, config, AWS access and renderer.

The library's entry point; the CLI makes one per run and calls one step with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from builder.config import ConfigLoader, ResolvedVars
from builder.layout import Layout, find_root

if TYPE_CHECKING:
    from builder.aws import Aws, EnvAws
    from builder.fingerprint import FileCache
    from builder.render import Renderer


@dataclass
class Project:
    layout: Layout
    local: bool = False
    overrides: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, root: str | None = None, *, local: bool = False,
             overrides: Mapping[str, str] | None = None, start: Path | None = None) -> Project:
        return cls(Layout(find_root(start, root)), local, dict(overrides or {}))

    @property
    def root(self) -> Path:
        return self.layout.root

    @cached_property
    def config(self) -> ConfigLoader:
        return ConfigLoader(self.layout, self.overrides)

    def resolve(self, app: str, env: str, comp: str) -> ResolvedVars:
        return self.config.resolve(app, env, comp)

    @cached_property
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

    @cached_property
    def renderer(self) -> Renderer:
        from builder.packer import installed_version
        from builder.render import Renderer

        return Renderer(self.layout, installed_version())

    @cached_property
    def file_cache(self) -> FileCache:
        """Playbook walks and file digests for this command's fingerprints."""
        from builder.fingerprint import FileCache

        return FileCache()
