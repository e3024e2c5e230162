"""A vars layer that is a symlink to a file outside the root is someone else's file:
refused (exit 2 naming it) unless --allow-outside-root or BUILDER_ALLOW_OUTSIDE_ROOT=1,
and then `vars` says where each of its values came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def linked(demo_root: Path, tmp_path: Path) -> Path:
    """vars/demo/dev/app.yml is a symlink to a file beside the root, not in it."""
    shared = tmp_path / "shared" / "app.yml"
    shared.parent.mkdir()
    shared.write_text("app_log_level: warning\n")
    (demo_root / "vars" / "demo" / "dev" / "app.yml").symlink_to(shared)
    return shared


def test_a_layer_outside_the_root_is_refused(demo_root: Path, linked: Path, cli: Any) -> None:
    done = cli("vars", "demo", "dev", "app", root=demo_root)

    assert done.exit_code == 2
    assert done.stderr.strip() == (
        f"builder: {demo_root}/vars/demo/dev/app.yml: a symlink to {linked}, outside the "
        "root: allow layers outside the root with --allow-outside-root or "
        "BUILDER_ALLOW_OUTSIDE_ROOT=1")


def test_allowed_its_values_say_where_they_came_from(demo_root: Path, linked: Path,
                                                     cli: Any) -> None:
    done = cli("--allow-outside-root", "--json", "vars", "demo", "dev", "app", root=demo_root)

    assert done.exit_code == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["vars"]["app_log_level"] == "warning"
    assert document["origins"]["app_log_level"] == (
        f"vars/demo/dev/app.yml:1 (outside the root: {linked})")
    assert "outside the root" not in document["origins"]["aws_region"]


def test_the_environment_allows_it_too(demo_root: Path, linked: Path, cli: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDER_ALLOW_OUTSIDE_ROOT", "1")
    done = cli("vars", "demo", "dev", "app", root=demo_root)

    assert done.exit_code == 0, done.stderr
    assert f"vars/demo/dev/app.yml:1 (outside the root: {linked})" in done.stdout


def test_a_symlink_inside_the_root_needs_nothing(demo_root: Path, cli: Any) -> None:
    (demo_root / "vars" / "demo" / "dev" / "app.yml").symlink_to("common.yml")

    assert cli("vars", "demo", "dev", "app", root=demo_root).exit_code == 0
