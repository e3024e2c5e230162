"""The local stack going away under a running command: `local down` refuses while a
release of the root runs, and with --force the release fails within seconds, saying
where to look, instead of retrying for most of a minute."""

from __future__ import annotations

import json
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
from builder.local.mode import LOCAL
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


def test_a_rerun_after_up_finishes_the_release(local_stack: Project, tmp: Path) -> None:
    """The stack goes away under a release whose deployment is in progress; after `local
    up` (the state restored, the deployment with it) a re-run attaches to it and ends
    verified."""
    combo = Combo("demo", "dev", "app")
    project = _opened(local_stack)  # an earlier test may have restarted the stack
    ami = make_ami(project, combo)
    stack.hold_deployments(project, combo.app, combo.env, combo.comp, "InProgress")
    # --break-lock: the release lost in the test before left its lock (kept with the state).
    child = start(local_stack.root, tmp, "release", "demo", "dev", "app", "--ami", ami,
                  "--break-lock")
    read_until(child, r"created deployment")
    forced = run(local_stack.root, tmp, "local", "down", "--force")
    assert forced.returncode == 0, forced.stderr
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 1, stderr[-3000:]

    project = _opened(local_stack)
    stack.up(project, build_host=False, deploy_step_seconds=0.2)
    stack.hold_deployments(project, combo.app, combo.env, combo.comp, None)
    # The lost release could not let go of its lock: the lock says its holder is gone.
    locked = run(local_stack.root, tmp, "release", "demo", "dev", "app", "--ami", ami)
    assert locked.returncode == 1, locked.stderr[-3000:]
    assert "that process is gone (killed): --break-lock" in last_line(locked)
    rerun = run(local_stack.root, tmp, "release", "demo", "dev", "app", "--ami", ami,
                "--break-lock", "--json")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    result = json.loads(rerun.stdout)
    assert result["outcome"] == "verified", result
    assert result["attached"], result
    record("release: local stack stopped mid-deployment, then up", "emulator gone",
           {}, "re-run after up (--break-lock): attached, verified")


def _opened(project: Project) -> Project:
    """The root opened anew, for the endpoint of the stack running now."""
    return Project.open(str(project.root), local_mode=LOCAL)
