"""Multi-region release benchmark on its own local stack (deployments stepping every
0.2 s), prod spanning three regions:

- wall seconds of a release in all three regions against a release of one of them
  (`--region`), in the same run, each with a fresh session (assume-role and client
  creation counted). Target: ratio at most 1.3 (the regions run in parallel).
- AWS API calls of each, excluding the status polls (their number depends on how long
  CodeDeploy takes).

    .venv/bin/python -m tests.bench.bench_regions [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from builder.local import stack
from builder.local.mode import LOCAL
from builder.project import Project
from builder.release.deploy import STATUS_POLLS
from builder.release.regions import release
from tests.conftest import copy_demo
from tests.release.emulated import MULTI_REGION_APP, REGIONS, baked_everywhere, make_multi_region

TARGET_RATIO = 1.3
DEPLOY_STEP_SECONDS = 0.2


def one_release(root: Path, setup: Project, region: str | None) -> dict[str, Any]:
    """Release a new AMI in every region (or in `region`) with a fresh session."""
    amis = baked_everywhere(setup)
    project = Project.open(str(root), local_mode=LOCAL)
    started = time.monotonic()
    result = release(project, MULTI_REGION_APP, ami_id=amis[region or REGIONS[0]],
                     region=region)
    seconds = time.monotonic() - started
    assert result.exit_code == 0, result.to_text()
    log = project.aws.call_log
    return {"seconds": round(seconds, 3),
            "calls_excluding_polls": log.total(excluding=STATUS_POLLS),
            "calls": dict(sorted(log.counts.items()))}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_regions")
    parser.add_argument("--runs", type=int, default=3, help="releases of each kind (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-regions-") as folder:
        root = copy_demo(Path(folder) / "infra")
        make_multi_region(root)
        setup = Project.open(str(root), local_mode=LOCAL)
        stack.up(setup, build_host=False, deploy_step_seconds=DEPLOY_STEP_SECONDS)
        try:
            one_release(root, setup, None)  # the first makes the lock tables: not timed
            single, every = [], []
            for _ in range(args.runs):  # interleaved: the machine's load hits both alike
                single.append(one_release(root, setup, REGIONS[0]))
                every.append(one_release(root, setup, None))
        finally:
            stack.down(setup.layout)
    one = statistics.median(r["seconds"] for r in single)
    three = statistics.median(r["seconds"] for r in every)
    report = {
        "deploy_step_seconds": DEPLOY_STEP_SECONDS,
        "regions": len(REGIONS),
        "one_region_release_s": {"median": one, "runs": [r["seconds"] for r in single]},
        "all_regions_release_s": {"median": three, "runs": [r["seconds"] for r in every]},
        "ratio": round(three / one, 3),
        "ratio_target": TARGET_RATIO,
        "within_target": three / one <= TARGET_RATIO,
        "one_region_calls_excluding_polls": single[-1]["calls_excluding_polls"],
        "all_regions_calls_excluding_polls": every[-1]["calls_excluding_polls"],
        "all_regions_calls": every[-1]["calls"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
