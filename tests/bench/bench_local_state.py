"""What keeping the local stack's state costs, on its own local stack (AWS emulator only,
deployments stepping every 0.2 s):
- seconds of `local up` (emulator start, restore, resources already there) with the
  saved state of 100 AMIs. Target: at most 5 s.
- a release with the state kept against one without (the same releases, the stack
  started with saving off), as a ratio measured here. Target: at most 1.10.

    .venv/bin/python -m tests.bench.bench_local_state [--amis 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from builder.config.models import Combo
from builder.local import stack
from builder.local.emulator.server import STATE_FILE
from builder.local.mode import LOCAL
from builder.local.state import state_dir
from builder.project import Project
from builder.release.release import release
from tests.conftest import copy_demo
from tests.release.emulated import make_ami

TARGET_UP_SECONDS = 5.0
TARGET_RELEASE_RATIO = 1.10
DEPLOY_STEP_SECONDS = 0.2
COMBO = Combo("demo", "dev", "app")


def _releases(root: Path, runs: int, *, keep_state: bool) -> list[float]:
    """Seconds of `runs` releases of new AMIs on an empty stack started with or without
    its state kept."""
    project = Project.open(str(root), local_mode=LOCAL)
    stack.reset(project.layout)  # the same start for both
    stack.up(project, build_host=False, deploy_step_seconds=DEPLOY_STEP_SECONDS,
             keep_state=keep_state)
    try:
        seconds = []
        for _ in range(runs):
            ami = make_ami(project, COMBO)
            started = time.monotonic()
            result = release(Project.open(str(root), local_mode=LOCAL), COMBO, ami_id=ami)
            assert result.outcome == "verified", result.outcome
            seconds.append(time.monotonic() - started)
        return seconds
    finally:
        stack.down(project.layout)


def main(amis: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-local-state-") as folder:
        root = copy_demo(Path(folder) / "infra")
        project = Project.open(str(root), local_mode=LOCAL)
        stack.up(project, build_host=False, deploy_step_seconds=DEPLOY_STEP_SECONDS)
        try:
            for _ in range(amis):
                make_ami(project, COMBO)
        finally:
            stack.down(project.layout)
        saved_bytes = (state_dir(project.layout) / STATE_FILE).stat().st_size
        started = time.monotonic()
        up = stack.up(Project.open(str(root), local_mode=LOCAL), build_host=False,
                      deploy_step_seconds=DEPLOY_STEP_SECONDS)
        up_seconds = time.monotonic() - started
        held = sum(len(regions.get("images", [])) for account in up.accounts.values()
                   for regions in account.values())
        stack.down(project.layout)
        # Alternating, so drift of the machine's load falls on both sides alike.
        kept: list[float] = []
        not_kept: list[float] = []
        for _ in range(2):
            not_kept += _releases(root, runs, keep_state=False)
            kept += _releases(root, runs, keep_state=True)
    ratio = statistics.median(kept) / statistics.median(not_kept)
    return {"amis_saved": amis, "images_after_up": held, "state_bytes": saved_bytes,
            "up_seconds": round(up_seconds, 2), "target_up_seconds": TARGET_UP_SECONDS,
            "release_s_state_kept": [round(s, 3) for s in kept],
            "release_s_state_not_kept": [round(s, 3) for s in not_kept],
            "release_ratio": round(ratio, 3), "target_release_ratio": TARGET_RELEASE_RATIO,
            "ok": up_seconds <= TARGET_UP_SECONDS and ratio <= TARGET_RELEASE_RATIO
            and held >= amis}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amis", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    report = main(args.amis, args.runs)
    print(json.dumps(report, indent=2))
    raise SystemExit(0 if report["ok"] else 1)
