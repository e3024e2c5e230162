"""Local mode as the core sees it: the `LocalMode` that `Project.open` takes.

The CLI hands `LOCAL` to the project with --local (or BUILDER_LOCAL); nothing in the
core imports this package.
"""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager
from datetime import datetime

from builder.config.layout import Layout
from builder.local import buildhost
from builder.local.state import running_endpoint
from builder.project import Project


class _LocalMode:
    """The emulator's endpoint and the local build hosts of one machine."""

    def endpoint(self, layout: Layout) -> str:
        return running_endpoint(layout)

    def build_host(self, layout: Layout, *, user: str, authorized_key: str,
                   source_ami: str = "") -> AbstractContextManager[buildhost.BuildHost]:
        return buildhost.build_host(layout, user=user, authorized_key=authorized_key,
                                    source_ami=source_ami)

    def reap_build_hosts(self, layout: Layout, *, now: datetime, release_run: str | None = None,
                         dry_run: bool = False) -> list[str]:
        return buildhost.stop_orphans(layout, now=now, release_run=release_run, dry_run=dry_run)


LOCAL = _LocalMode()


def local_project(project: Project) -> Project:
    """The same root with every AWS call going to the local stack (the `local`
    commands act on it whether or not --local was given)."""
    return project if project.local else dataclasses.replace(project, local_mode=LOCAL)
