"""Rebuild benchmark: `rebuild --dry-run` over a generated root of 400 combos spread
over 6 accounts (each in its own region), in local mode, with an AMI per bake combo.

Prints JSON: time and AWS calls of the plan with 200 and with 400 combos over the
same 6 (account, region) pairs. The target: calls grow with the pairs, not the combos.

    .venv/bin/python -m tests.bench.bench_rebuild
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from builder.config.models import Combo
from builder.local import stack
from builder.local.mode import LOCAL
from builder.output import Progress
from builder.pipelines.rebuild import rebuild
from builder.project import Project
from tests.pipelines.conftest import bake_like

APPS, ENVS, COMPS = 8, 5, 10  # 400 combos; the last env of each app promotes
ACCOUNTS = 6
REGIONS = ("eu-west-1", "eu-central-1", "us-east-1")


def place(app: int, env: int) -> tuple[str, str]:
    """(account, region) of an app's env: 6 accounts, each always in the same region."""
    index = (app * ENVS + env) % ACCOUNTS
    return f"{200000000000 + index}", REGIONS[index % len(REGIONS)]


def generate_repo(root: Path) -> None:
    for a in range(APPS):
        app_dir = root / "vars" / f"app{a}"
        (app_dir / "common").mkdir(parents=True, exist_ok=True)
        (app_dir / "common" / "common.yml").write_text(
            "source_ami_filter:\n  owners: ['099720109477']\n"
            "  name: 'ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*'\n"
            "port: 8080\n")
        playbooks = root / "playbooks" / f"app{a}"
        playbooks.mkdir(parents=True, exist_ok=True)
        for c in range(COMPS):
            (playbooks / f"packer-c{c}.yml").write_text(
                f"- hosts: all\n  tasks:\n    - ansible.builtin.debug: msg=c{c}\n")
        for e in range(ENVS):
            account, region = place(a, e)
            (app_dir / f"e{e}").mkdir(exist_ok=True)
            (app_dir / f"e{e}" / "common.yml").write_text(
                f"components: [{', '.join(f'c{c}' for c in range(COMPS))}]\n"
                f"aws_region: {region}\naws_account_id: '{account}'\n"
                + (f"promote_from: e{e - 1}\n" if e == ENVS - 1 else ""))


def seed_amis(project: Project) -> int:
    """An AMI as a bake leaves it for every combo that bakes (not the promoting env)."""
    made = 0
    for a in range(APPS):
        for e in range(ENVS - 1):
            for c in range(COMPS):
                bake_like(project, Combo(f"app{a}", f"e{e}", f"c{c}"))
                made += 1
    return made


def measure(root: Path) -> dict[str, Any]:
    project = Project.open(str(root), local_mode=LOCAL)  # a fresh call count
    started = time.perf_counter()
    report = rebuild(project, dry_run=True, progress=Progress(quiet=True))
    seconds = time.perf_counter() - started
    counts = project.aws.call_log.counts
    actions: dict[str, int] = {}
    for outcome in report.outcomes:
        actions[outcome.entry.action] = actions.get(outcome.entry.action, 0) + 1
    return {"combos": len(report.outcomes), "seconds": round(seconds, 2),
            "api_calls": project.aws.call_log.total(), "calls_by_operation": dict(counts),
            "actions": actions}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="builder-bench-rebuild-") as folder:
        root = Path(folder) / "infra"
        generate_repo(root)
        project = Project.open(str(root), local_mode=LOCAL)
        started = time.perf_counter()
        stack.up(project, build_host=False, deploy_step_seconds=0.05)
        try:
            seeded = seed_amis(project)
            setup = time.perf_counter() - started
            full = measure(root)
            # Half the apps: 200 combos over the same accounts and regions.
            for a in range(APPS // 2, APPS):
                shutil.rmtree(root / "vars" / f"app{a}")
            half = measure(root)
        finally:
            stack.down(project.layout)
    pairs = len({place(a, e) for a in range(APPS) for e in range(ENVS)})
    met = full["api_calls"] == half["api_calls"]
    assert pairs == len({place(a, e) for a in range(APPS // 2) for e in range(ENVS)})
    print(json.dumps({
        "benchmark": "rebuild --dry-run, local mode",
        "account_region_pairs": pairs, "amis_seeded": seeded,
        "setup_seconds": round(setup, 1),
        "runs": [half, full],
        "combos_ratio": round(full["combos"] / half["combos"], 2),
        "calls_ratio": round(full["api_calls"] / half["api_calls"], 2),
        "calls_per_pair": round(full["api_calls"] / pairs, 2),
        "target": "calls proportional to account x region pairs, not combos",
        "met": met,
    }, indent=2))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
