"""The local stack going away under a running command: `local down` refuses while a
release of the root runs, and with --force the release fails within seconds, saying
where to look, instead of retrying for most of a minute."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.config.models import Combo
from builder.local import stack
from builder.project import Project
from tests.faults.leftovers import last_line, read_until, record, run, start
from tests.release.emulated import make_ami

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.local]


@pytest.fixture
def tmp() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="faults-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_stack_stopped_under_a_release(local_stack: Project, tmp: Path) -> None:
    combo = Combo("demo", "dev", "app")
    ami = make_ami(local_stack, combo)
    # The release stops itself (SIGSTOP) once its deployment exists: a run in flight.
    child = start(local_stack.root, tmp, "release", "demo", "dev", "app", "--ami", ami,
                  signal_at="SIGSTOP@^created deployment")
    read_until(child, r"created deployment")
    try:
        refused = run(local_stack.root, tmp, "local", "down")
        assert refused.returncode == 2, refused.stderr
        assert f"in use by {child.pid}: builder release demo dev" in last_line(refused)
        assert "--force" in last_line(refused)

        forced = run(local_stack.root, tmp, "local", "down", "--force")
        assert forced.returncode == 0, forced.stderr
    finally:
        os.kill(child.pid, signal.SIGCONT)
    resumed = time.monotonic()
    _, stderr = child.communicate(timeout=60)
    took = time.monotonic() - resumed

    assert child.returncode == 1, stderr[-3000:]
    assert took < 10, stderr[-3000:]
    assert "the local stack at http://127.0.0.1:" in stderr.strip().splitlines()[-1]
    assert "stopped responding; `builder local status`" in stderr.strip().splitlines()[-1]
    assert "Traceback" not in stderr
    stack.up(local_stack, build_host=False, deploy_step_seconds=0.2)  # for what follows
    record("release: local stack stopped (down --force)", "emulator gone",
           {"markers": list((local_stack.layout.state_dir / "local" / "runs").glob("*"))},
           f"exit 1 in {took:.1f}s")
