"""A missing builder key is bad config (exit 2) naming the files that could hold it,
in every command that reads config; never a traceback."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest


def drop_line(path: Path, key: str) -> None:
    """Remove the top-level `key:` line (and its indented block) from a vars file."""
    lines = path.read_text().splitlines(keepends=True)
    kept, skipping = [], False
    for line in lines:
        if line.startswith(f"{key}:"):
            skipping = True
            continue
        if skipping and line[:1] in (" ", "\t"):
            continue
        skipping = False
        kept.append(line)
    path.write_text("".join(kept))


@pytest.fixture
def no_components(demo_root: Path) -> Path:
    drop_line(demo_root / "vars/demo/dev/common.yml", "components")
    return demo_root


ENV_FILES = "set it in vars/demo/common/common.yml or vars/demo/dev/common.yml"


@pytest.mark.parametrize("argv", [
    ("vars", "demo", "dev", "app"),
    ("validate", "--offline"),
    ("status",),
    ("rebuild", "--dry-run"),
    ("bake", "demo", "dev", "--all"),
])
def test_an_env_without_components_is_bad_config(no_components: Path, cli: Any,
                                                  argv: tuple[str, ...]) -> None:
    result = cli(*argv, root=no_components)
    assert result.exit_code == 2, result.output
    assert "components: required" in result.output
    assert ENV_FILES in result.output
    assert "Traceback" not in result.output and "KeyError" not in result.output


def test_validate_files_the_problem_under_its_env(no_components: Path, cli: Any) -> None:
    result = cli("validate", "--offline", root=no_components)
    assert re.search(r"FAIL demo/dev\n.*components: required", result.stdout)
    assert "ok   demo/prod/app" in result.stdout


@pytest.mark.parametrize(("key", "where"), [
    ("aws_region", "vars/demo/dev/common.yml"),
    ("aws_account_id", "vars/demo/dev/common.yml"),
    ("source_ami_filter", "vars/demo/common/common.yml"),
])
def test_every_required_key_names_its_layer_files(demo_root: Path, cli: Any, key: str,
                                                  where: str) -> None:
    drop_line(demo_root / where, key)
    result = cli("vars", "demo", "dev", "worker", root=demo_root)
    assert result.exit_code == 2, result.output
    assert ("set it in vars/demo/common/common.yml, vars/demo/common/worker.yml, "
            "vars/demo/dev/common.yml or vars/demo/dev/worker.yml") in result.output
    assert key in result.output


def test_null_components_points_at_the_line(demo_root: Path, cli: Any) -> None:
    path = demo_root / "vars/demo/dev/common.yml"
    path.write_text(path.read_text().replace("components: [app, worker]", "components:"))
    result = cli("status", root=demo_root)
    assert result.exit_code == 2, result.output
    assert "vars/demo/dev/common.yml:1: demo/dev: components: required" in result.output
