"""`builder diff APP ENV COMP`: what the launch template runs vs the newest baked AMI,
read from the build folders the AMIs' build ids name (AMIs as a bake leaves them,
without Packer)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from builder.aws import images
from builder.bake.packages import Package, write_manifest
from builder.config.models import Combo
from builder.project import Project
from builder.release.release import release
from tests.pipelines.conftest import bake_like

pytestmark = pytest.mark.local


def _with_packages(project: Project, combo: Combo, image: images.Image,
                   found: list[Package]) -> None:
    folder = (project.layout.state_dir / "builds" / combo.app / combo.env / combo.comp /
              image.tags[images.TAG_BUILD_ID])
    write_manifest(folder, found)


def test_what_runs_vs_the_newest_bake(local_stack: Project, cli: Any) -> None:
    combo = Combo("demo", "dev", "worker")
    now = datetime.now(UTC)
    running = bake_like(local_stack, combo, built_at=now - timedelta(days=2),
                        created=now - timedelta(days=2))
    release(local_stack, combo, ami_id=running.id)
    newest = bake_like(local_stack, combo, built_at=now, created=now)
    _with_packages(local_stack, combo, running, [Package("jq", "amd64", "1.6-2.1", "jq"),
                                                 Package("old", "all", "1.0", "old")])
    _with_packages(local_stack, combo, newest, [Package("jq", "amd64", "1.6-2.1+deb12u1", "jq"),
                                                Package("tree", "amd64", "2.1.0-1", "tree")])

    done = cli("--local", "--json", "diff", "demo", "dev", "worker", root=local_stack.root)

    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (report["before"], report["after"]) == (running.id, newest.id)
    assert [(c["name"], c["change"]) for c in report["packages"]] == [
        ("jq", "upgraded"), ("old", "removed"), ("tree", "added")]
    assert report["inputs"] == []


def test_an_ami_without_a_manifest_is_exit_2(local_stack: Project, cli: Any) -> None:
    combo = Combo("demo", "dev", "app")
    old = bake_like(local_stack, combo)
    new = bake_like(local_stack, combo)
    _with_packages(local_stack, combo, new, [Package("jq", "amd64", "1.6", "jq")])

    done = cli("--local", "diff", old.id, new.id, root=local_stack.root)

    assert done.exit_code == 2
    assert f"{old.id}: no package manifest" in done.output
