"""One infra repo opened for a command: its layout, config, AWS access and renderer.

The library's entry point; the CLI makes one per run and calls one step with it.
Local mode plugs in here and only here: `Project.open(..., local_mode=...)` takes an
object with the `LocalMode` shape (builder.local.mode provides it); the core never
imports `builder.local`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar, overload

from builder.config.layers import ConfigLoader, ResolvedVars
from builder.config.layout import Layout, find_root

if TYPE_CHECKING:
    from builder.aws import Aws, EnvAws
    from builder.bake.fingerprint import FileCache
    from builder.render.template import Renderer

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


class BuildHost(Protocol):
    """Where a local bake's SSH goes instead of an EC2 instance."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    def save_changes(self, dest: Path) -> Path:
        """Keep what the bake changed, as the local image of the new AMI."""
        ...

    def keep(self, run_id: str, until: str) -> None:
        """Leave the host running when the bake ends (kept for debugging until `until`)."""
        ...


class LocalMode(Protocol):
    """What local mode adds to a project: the emulator's endpoint and build hosts."""

    def endpoint(self, layout: Layout) -> str:
        """The running emulator's endpoint (an InputError when it isn't running)."""
        ...

    def build_host(self, layout: Layout, *, user: str, authorized_key: str,
                   source_ami: str = "") -> AbstractContextManager[BuildHost]:
        """A fresh build host for one bake from base image `source_ami`, torn down when
        the block ends."""
        ...

    def reap_build_hosts(self, layout: Layout, *, now: datetime, release_run: str | None = None,
                         dry_run: bool = False) -> list[str]:
        """Tear down (or only list) the build hosts of runs that are gone, a kept one once
        its time is before `now` or its run is `release_run`; their names."""
        ...


@dataclass
class Project:
    """An infra repo, opened for real AWS or (with `local_mode`) for the local stack."""

    layout: Layout
    local_mode: LocalMode | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)
    allow_outside_root: bool = False  # vars layers may be symlinks to files outside it

    @classmethod
    def open(cls, root: str | None = None, *, local_mode: LocalMode | None = None,
             overrides: Mapping[str, str] | None = None,
             allow_outside_root: bool = False) -> Project:
        """The repo at `root` (else BUILDER_ROOT, else the nearest folder upward with vars/)."""
        return cls(Layout(find_root(root)), local_mode, dict(overrides or {}),
                   allow_outside_root)

    @property
    def local(self) -> bool:
        """True when every AWS call and bake goes to the local stack."""
        return self.local_mode is not None

    @property
    def root(self) -> Path:
        return self.layout.root

    @_made_once
    def config(self) -> ConfigLoader:
        """The layers of this repo, with `-e` overrides on top."""
        return ConfigLoader(self.layout, self.overrides, self.allow_outside_root)

    def resolve(self, app: str, env: str, comp: str, *,
                check_vault_files: bool = True) -> ResolvedVars:
        """The resolved vars of one combo, each with its origin (see ConfigLoader.resolve)."""
        return self.config.resolve(app, env, comp, check_vault_files=check_vault_files)

    @_made_once
    def aws(self) -> Aws:
        """Real AWS, or the local emulator with --local (never both, never by accident)."""
        from builder.aws import Aws

        if self.local_mode is not None:
            return Aws(local_endpoint=self.local_mode.endpoint(self.layout))
        return Aws()

    def env_aws(self, resolved: ResolvedVars) -> EnvAws:
        """AWS access for the combo's env: its account, region, profile and role."""
        from builder.aws import AwsTarget

        return self.aws.env(AwsTarget.of(resolved.settings))

    @_made_once
    def renderer(self) -> Renderer:
        """The template renderer for the installed Packer's syntax."""
        from builder.packer import installed_version
        from builder.render.template import Renderer

        return Renderer(self.layout, installed_version())

    @_made_once
    def file_cache(self) -> FileCache:
        """Playbook walks and file digests for this command's fingerprints."""
        from builder.bake.fingerprint import FileCache

        return FileCache()
