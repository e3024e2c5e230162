"""IAM benchmark: `builder iam-policy` over the rebuild benchmark's 400 combos (6
accounts), and `builder doctor`'s AWS calls per env account in local mode with IAM
enforced.

Targets: iam-policy for 400 combos in at most 1 s; doctor at most 3 calls per account.

    .venv/bin/python -m tests.bench.bench_access
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from builder.local import stack
from builder.local.mode import LOCAL
from builder.pipelines.access import doctor, iam_policy
from builder.project import Project
from tests.bench.bench_rebuild import generate_repo

POLICY_SECONDS, CALLS_PER_ACCOUNT = 1.0, 3


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="builder-bench-access-") as folder:
        root = Path(folder) / "infra"
        generate_repo(root)
        started = time.perf_counter()
        policies = iam_policy(Project.open(str(root)))
        policy_seconds = time.perf_counter() - started
        combos = sum(1 for _ in Project.open(str(root)).config.combos())

        project = Project.open(str(root), local_mode=LOCAL)
        stack.up(project, build_host=False, deploy_step_seconds=0.05, enforce_iam=True)
        try:
            fresh = Project.open(str(root), local_mode=LOCAL)
            started = time.perf_counter()
            report = doctor(fresh)
            doctor_seconds = time.perf_counter() - started
        finally:
            stack.down(project.layout)
    accounts = len(report.accounts)
    calls = fresh.aws.call_log.total()
    met = (policy_seconds <= POLICY_SECONDS and report.ok
           and calls <= CALLS_PER_ACCOUNT * accounts)
    print(json.dumps({
        "benchmark": "iam-policy and doctor",
        "combos": combos, "accounts": len(policies.accounts),
        "iam_policy_seconds": round(policy_seconds, 3),
        "doctor_seconds": round(doctor_seconds, 2), "doctor_ok": report.ok,
        "doctor_calls": calls, "doctor_calls_per_account": round(calls / accounts, 2),
        "calls_by_operation": dict(fresh.aws.call_log.counts),
        "target": f"iam-policy <= {POLICY_SECONDS} s for 400 combos; doctor <= "
                  f"{CALLS_PER_ACCOUNT} calls per account",
        "met": met,
    }, indent=2))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
