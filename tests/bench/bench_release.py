"""Release benchmark on its own local stack (AWS emulator only, deployments stepping
every 0.2 s):

- AWS API calls of one release (fresh session: assume-role included; lock table already
  there), excluding the status polls (codedeploy.GetDeployment and the lifecycle reads
  made with it) whose number depends on how long CodeDeploy takes. Target: at most 15.
- the extra calls of the first release in an account (it makes the lock table).
- the same for deploy_strategy blue_green_existing (staging: a pair of standing ASGs,
  releases alternating between them). Target: at most 20; and as a ratio to the
  blue_green_copy release of the same run.
- seconds from "AMI available" to "deployment created".
- the same for a release by instance refresh (demo prod app, deploy_strategy:
  instance_refresh; polls: autoscaling.DescribeInstanceRefreshes). Target: at most 20;
  its release time as a ratio to the blue/green copy's (same run, same step time).

    .venv/bin/python -m tests.bench.bench_release [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from builder.aws import images
from builder.config.models import Combo
from builder.local import stack
from builder.local.mode import LOCAL
from builder.project import Project
from builder.release import refresh
from builder.release.deploy import STATUS_POLLS
from builder.release.release import release
from tests.conftest import copy_demo
from tests.release.emulated import make_ami

TARGET_CALLS = 15
REFRESH_TARGET_CALLS = 20
TARGET_CALLS_EXISTING = 20
DEPLOY_STEP_SECONDS = 0.2


def one_release(root: Path, setup: Project, combo: Combo,
                polls: tuple[str, ...] = STATUS_POLLS) -> dict[str, Any]:
    """Release a new AMI of `combo` with a fresh session; its calls (`polls` counted
    apart) and timings."""
    ami = make_ami(setup, combo)
    ec2 = setup.env_aws(setup.resolve(combo.app, combo.env, combo.comp)).client("ec2")
    while images.describe(ec2, image_ids=[ami])[0].state != "available":
        time.sleep(0.05)
    available = time.monotonic()
    created: list[float] = []

    def progress(_subject: str, message: str) -> None:
        if message.startswith(("created deployment", "created instance refresh")):
            created.append(time.monotonic())

    project = Project.open(str(root), local_mode=LOCAL)
    result = release(project, combo, ami_id=ami, progress=progress)
    log = project.aws.call_log
    return {
        "outcome": result.outcome,
        "calls_excluding_polls": log.total(excluding=polls),
        "calls": dict(sorted(log.counts.items())),
        "polls": {name: log.counts[name] for name in polls},
        "ami_available_to_deployment_created_s": round(created[0] - available, 3),
        "release_s": result.timings["total"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_release")
    parser.add_argument("--runs", type=int, default=3, help="releases timed (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-release-") as folder:
        root = copy_demo(Path(folder) / "infra")
        setup = Project.open(str(root), local_mode=LOCAL)
        stack.up(setup, build_host=False, deploy_step_seconds=DEPLOY_STEP_SECONDS)
        try:
            first = one_release(root, setup, Combo("demo", "dev", "worker"))
            runs = [one_release(root, setup, Combo("demo", "dev", "app"))
                    for _ in range(args.runs)]
            refreshes = [one_release(root, setup, Combo("demo", "prod", "app"),
                                     refresh.STATUS_POLLS) for _ in range(args.runs + 1)]
            refreshes = refreshes[1:]  # the first in prod makes its lock table
            one_release(root, setup, Combo("demo", "staging", "worker"))  # the lock table
            pair_runs = [one_release(root, setup, Combo("demo", "staging", "app"))
                         for _ in range(args.runs)]
        finally:
            stack.down(setup.layout)
    steady, pair = runs[-1], pair_runs[-1]
    report = {
        "deploy_step_seconds": DEPLOY_STEP_SECONDS,
        "api_calls_excluding_polls": steady["calls_excluding_polls"],
        "api_calls_target": TARGET_CALLS,
        "within_target": all(r["calls_excluding_polls"] <= TARGET_CALLS for r in runs),
        "excluded_polls": steady["polls"],
        "calls": steady["calls"],
        "first_release_in_account_calls_excluding_polls": first["calls_excluding_polls"],
        "first_release_extra_calls": {
            name: n - steady["calls"].get(name, 0) for name, n in first["calls"].items()
            if name not in STATUS_POLLS and n != steady["calls"].get(name, 0)},
        "ami_available_to_deployment_created_s": {
            "median": statistics.median(r["ami_available_to_deployment_created_s"]
                                        for r in runs),
            "runs": [r["ami_available_to_deployment_created_s"] for r in runs]},
        "release_s": {"median": statistics.median(r["release_s"] for r in runs),
                      "runs": [r["release_s"] for r in runs]},
        "blue_green_existing": {
            "api_calls_excluding_polls": pair["calls_excluding_polls"],
            "api_calls_target": TARGET_CALLS_EXISTING,
            "within_target": all(r["calls_excluding_polls"] <= TARGET_CALLS_EXISTING
                                 for r in pair_runs),
            "calls_ratio_to_blue_green_copy": round(
                pair["calls_excluding_polls"] / steady["calls_excluding_polls"], 3),
            "calls": pair["calls"],
            "release_s_ratio_to_blue_green_copy": round(
                statistics.median(r["release_s"] for r in pair_runs)
                / statistics.median(r["release_s"] for r in runs), 3),
            "outcomes": [r["outcome"] for r in pair_runs]},
    }
    steady_refresh = refreshes[-1]
    report["instance_refresh"] = {
        "api_calls_excluding_polls": steady_refresh["calls_excluding_polls"],
        "api_calls_target": REFRESH_TARGET_CALLS,
        "within_target": all(r["calls_excluding_polls"] <= REFRESH_TARGET_CALLS
                             for r in refreshes),
        "excluded_polls": steady_refresh["polls"],
        "calls": steady_refresh["calls"],
        "release_s": {"median": statistics.median(r["release_s"] for r in refreshes),
                      "runs": [r["release_s"] for r in refreshes]},
        "release_s_ratio_to_blue_green_copy": round(
            statistics.median(r["release_s"] for r in refreshes)
            / statistics.median(r["release_s"] for r in runs), 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
