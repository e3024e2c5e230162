"""Adoption benchmarks on tests/fixtures/adopted/ (needs root for the one real bake):

(a) fingerprinting, per file read, against the demo's (target: at most 1.5 times);
(b) installing requirements.yml when the cache holds the set (target: 0.2 s);
(c) a skipped bake of the adopted repo, inputs unchanged (target: 2 s).

    .venv/bin/python -m tests.bench.bench_adopted [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from builder.bake.fingerprint import FileCache, compute
from builder.config.layers import ConfigLoader
from builder.config.layout import Layout
from builder.local import stack
from builder.local.mode import LOCAL
from builder.packer import PackerVersion
from builder.project import Project
from builder.provision import ansible_cfg, requirements
from builder.provision.steps import tool_files
from builder.render.template import Renderer
from tests.conftest import FIXTURES, copy_demo

VAULT_PASSWORD = "shop-dev-vault\n"  # the fixture's


def per_file_seconds(root: Path, app: str, comp: str, runs: int) -> tuple[float, int]:
    """Median seconds per file of one fingerprint, a fresh file cache each time."""
    layout = Layout(root)
    resolved = ConfigLoader(layout).resolve(app, "dev", comp)
    rendered = Renderer(layout, PackerVersion(1, 6, 6)).render(resolved)
    times, files = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        found = compute(layout, resolved, rendered, "ami-0123456789abcdef0",
                        tool_files(layout, resolved), FileCache())
        times.append(time.perf_counter() - start)
        files = len(found.inputs["files"]) + len(found.inputs["vault"])
    return statistics.median(times) / files, files


def main() -> dict[str, object]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-adopted-") as tmp:
        demo = copy_demo(Path(tmp) / "demo")
        shop = Path(tmp) / "shop"
        shutil.copytree(FIXTURES / "adopted", shop)

        demo_s, demo_files = per_file_seconds(demo, "demo", "app", runs)
        shop_s, shop_files = per_file_seconds(shop, "shop", "web", runs)
        results["fingerprint_files"] = {"demo": demo_files, "adopted": shop_files}
        results["fingerprint_per_file_ratio"] = round(shop_s / demo_s, 2)
        results["fingerprint_per_file_ratio_target"] = 1.5

        layout = Layout(shop)
        playbook = shop / "ansible/playbooks/web.yml"
        config = ansible_cfg.find(layout, playbook)
        requirements.ensure(layout, config, playbook)  # the first install
        hits = []
        for _ in range(runs):
            start = time.perf_counter()
            requirements.ensure(layout, config, playbook)
            hits.append(time.perf_counter() - start)
        results["requirements_cached_s"] = round(statistics.median(hits), 4)
        results["requirements_cached_target_s"] = 0.2

        password = Path(tmp) / "vault-pass"
        password.write_text(VAULT_PASSWORD)
        env = {**os.environ, "BUILDER_VAULT_PASSWORD_FILE": str(password)}
        argv = [sys.executable, "-m", "builder", "--root", str(shop), "--local", "bake",
                "shop", "dev", "web", "--json"]
        project = Project.open(str(shop), local_mode=LOCAL)
        stack.up(project, build_host=True, deploy_step_seconds=0.2)
        try:
            subprocess.run(argv, check=True, capture_output=True, env=env)
            skips = []
            for _ in range(runs):
                start = time.perf_counter()
                done = subprocess.run(argv, check=True, capture_output=True, text=True, env=env)
                skips.append(time.perf_counter() - start)
                assert json.loads(done.stdout)["skipped"] is True
        finally:
            stack.down(project.layout)
        results["skipped_bake_s"] = round(statistics.median(skips), 2)
        results["skipped_bake_target_s"] = 2.0
    return results


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
