"""Shared fixtures: scenario repos copied into tmp_path, the CLI run for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from builder.aws.calls import CHECK_ENV, RUNNING
from builder.cli import app
from builder.local.mode import LOCAL
from tests.faults.table import pytest_configure, pytest_terminal_summary

__all__ = ["pytest_configure", "pytest_terminal_summary"]  # the fault table's hooks

if TYPE_CHECKING:
    from builder.project import Project

# Every AWS call builder makes must be in the calls table for its step (subprocesses
# inherit the setting): a call missing from the table fails the test that made it.
os.environ[CHECK_ENV] = "1"

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def copy_demo(dest: Path) -> Path:
    """The repo's own infra parts (vars, playbooks, packer) as a fresh infra repo."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in ("vars", "playbooks", "packer"):
        shutil.copytree(REPO / part, dest / part)
    return dest


def partition_repo(dest: Path) -> Path:
    """The demo repo with envs in China and GovCloud laid over it (tests/fixtures/partitions)."""
    root = copy_demo(dest)
    shutil.copytree(FIXTURES / "partitions" / "vars", root / "vars", dirs_exist_ok=True)
    return root


def commit_all(root: Path) -> None:
    """Make `root` a git checkout with everything committed (bakes tag the commit)."""
    for argv in (["init", "-q"], ["add", "-A"],
                 ["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "infra"]):
        subprocess.run(["git", "-C", str(root), *argv], check=True)


@contextmanager
def stack_for_bakes(root: Path) -> Iterator[Project]:
    """A running local stack with the build host image for the repo at `root`, stopped
    when the block ends."""
    from builder.local import stack
    from builder.project import Project

    project = Project.open(str(root), local_mode=LOCAL)
    stack.up(project, build_host=True, deploy_step_seconds=0.2)
    try:
        yield project
    finally:
        stack.down(project.layout)


def require_root() -> None:
    """The local build host mounts and chroots: without root its tests are skipped (the
    rest of the suite still runs)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the local build host mounts an overlay and chroots")


@pytest.fixture(autouse=True)
def _calls_listed() -> Iterator[None]:
    """A call missing from the calls table fails the test even when builder code caught
    the error it raised (a batch reporting one failed comp, say)."""
    before = len(RUNNING.unlisted)
    yield
    assert RUNNING.unlisted[before:] == [], "AWS calls not in builder/aws/calls.py"


@pytest.fixture
def demo_root(tmp_path: Path) -> Path:
    return copy_demo(tmp_path / "infra")


@pytest.fixture
def fixture_root(tmp_path: Path) -> Callable[[str], Path]:
    """A named scenario repo from tests/fixtures/, copied so tests may change it."""

    def make(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(FIXTURES / name, dest)
        return dest

    return make


@pytest.fixture
def cli() -> Callable[..., object]:
    """Run the CLI in-process through typer's runner; returns the click Result."""
    runner = CliRunner()

    def invoke(*args: str, root: Path | None = None) -> object:
        argv = (["--root", str(root)] if root else []) + list(args)
        return runner.invoke(app, argv, catch_exceptions=False)

    return invoke


def run_builder(*args: str, root: Path | None = None, env: dict[str, str] | None = None,
                timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `python -m builder` as a real subprocess."""
    argv = [sys.executable, "-m", "builder"] + (["--root", str(root)] if root else []) + list(args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


@pytest.fixture(scope="module")
def local_stack(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A running local stack on a fresh copy of the demo repo, one per test module,
    stopped after it. Yields the Project opened with local_mode=LOCAL (its `.root`, and
    `.aws.local_endpoint` for the endpoint).

    AWS only: no build host image. Deployments move one state every 0.2 s; a module
    sets `local_deploy_step_seconds = N` to slow them down.
    """
    from builder.local import stack
    from builder.project import Project

    root = copy_demo(tmp_path_factory.mktemp("local") / "infra")
    project = Project.open(str(root), local_mode=LOCAL)
    step = getattr(request.module, "local_deploy_step_seconds", 0.2)
    stack.up(project, build_host=False, deploy_step_seconds=step)
    try:
        yield project
    finally:
        stack.down(project.layout)


@pytest.fixture(scope="module")
def bake_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A demo repo (a git checkout, so bakes tag the commit) with a running local stack
    and the build host image, one per test module: for real bakes (needs root)."""
    require_root()
    root = copy_demo(tmp_path_factory.mktemp("bake") / "infra")
    commit_all(root)
    with stack_for_bakes(root):
        yield root
