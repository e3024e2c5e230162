"""Ctrl-C / SIGTERM at several phases of a bake, and `reap` after a crash: nothing is
left behind either way."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bake.leftovers import NOTHING_LEFT, leftovers
from tests.conftest import run_builder

pytestmark = [pytest.mark.slow, pytest.mark.local]


def start_bake(root: Path, comp: str = "app") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "builder", "--root", str(root), "--local", "bake", "demo", "dev",
         comp, "--force"], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def wait_for(child: subprocess.Popen[str], pattern: str, timeout: float = 300) -> list[str]:
    """Read progress until a line matches; returns the lines read."""
    assert child.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    for line in child.stderr:
        seen.append(line)
        if re.search(pattern, line):
            return seen
        assert time.monotonic() < deadline, f"no {pattern!r} in time"
    raise AssertionError(f"bake ended before {pattern!r}:\n{''.join(seen[-20:])}")


@pytest.mark.parametrize(
    ("phase", "signum"),
    [
        (r"starting a fresh local build host", signal.SIGINT),
        (r"packer-app\.yml: task 4/", signal.SIGINT),
        (r"finalize\.yml: task 3/", signal.SIGTERM),
    ],
    ids=["before-packer", "comp-playbook", "finalize"],
)
def test_interrupt_cleans_up(bake_root: Path, phase: str, signum: int) -> None:
    child = start_bake(bake_root)
    wait_for(child, phase)
    child.send_signal(signum)
    _, stderr = child.communicate(timeout=300)
    assert child.returncode == 128 + signum, stderr[-2000:]
    assert "interrupted" in stderr.strip().splitlines()[-1]
    assert leftovers(bake_root) == NOTHING_LEFT


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_reap_removes_what_a_crashed_bake_left(bake_root: Path) -> None:
    child = start_bake(bake_root, "worker")
    wait_for(child, r"packer-worker\.yml: task 3/")
    # A crash: builder and Packer die at once, nobody cleans up.
    for pid in [child.pid, *_descendants(child.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    child.wait()
    left = leftovers(bake_root)
    assert left["instances"] and left["key_pairs"] and left["security_groups"]
    assert left["build_hosts"]

    listed = run_builder("--local", "reap", "--dry-run", "--json", root=bake_root)
    assert listed.returncode == 0, listed.stderr
    assert leftovers(bake_root)["instances"] == left["instances"]  # only listed

    # Young, but the run's process is gone: reaped by default, without --older-than.
    done = run_builder("--local", "reap", root=bake_root)
    assert done.returncode == 0, done.stderr
    assert left["instances"][0] in done.stdout
    assert leftovers(bake_root) == NOTHING_LEFT
