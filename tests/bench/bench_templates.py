"""User templates: what adapting one adds to `render`, beside the bundled template's
render (target: at most 50 ms added); with --bake (root, local mode), a bake of a user
template (hcl2_upgrade style) running the 30-task playbook through builder's provisioning
vs. the same template with `builder_provisioning: template` (Packer's own ansible
provisioner; target: builder at least 4x faster on the playbook). Both runs end with
builder's hygiene and checks; the playbook's time is the provision phase without them.

    .venv/bin/python -m tests.bench.bench_templates [--bake]
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from builder.config.layers import ConfigLoader
from builder.config.layout import Layout
from builder.packer import installed_version
from builder.render import adapt
from builder.render.template import Renderer

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "templates"
USER_TEMPLATES = ("upgraded", "tutorial", "golden", "tagged", "ansible-local")
RUNS = 15


def _ms(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1000, 1)


def main() -> dict[str, object]:
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(shutil.copytree(FIXTURE, Path(tmp) / "zoo"))
        layout = Layout(root)
        loader = ConfigLoader(layout, {})
        version = installed_version()
        Renderer(layout, version).render(loader.resolve("zoo", "dev", "knobs"))  # imports

        def render_ms(comp: str) -> float:
            resolved = loader.resolve("zoo", "dev", comp)
            times = []
            for _ in range(RUNS):  # a fresh renderer: no parse or adaptation cache
                started = time.perf_counter()
                Renderer(layout, version).render(resolved)
                times.append(time.perf_counter() - started)
            return _ms(times)

        results["bundled_render_ms"] = render_ms("knobs")
        added = {}
        for comp in USER_TEMPLATES:
            resolved = loader.resolve("zoo", "dev", comp)
            rendered = Renderer(layout, version).render(resolved)
            context = adapt.Context(rendered.source.parent, resolved.playbook_path,
                                    rendered.var_values, root)
            times = []
            for _ in range(RUNS):
                started = time.perf_counter()
                adapt.adapt(rendered.original_hcl, context)
                times.append(time.perf_counter() - started)
            added[comp] = {"render_ms": render_ms(comp), "adaptation_ms": _ms(times)}
        results["user_templates"] = added
        results["max_adaptation_ms"] = max(v["adaptation_ms"] for v in added.values())
        results["adaptation_target_ms"] = 50
    return results


def bake_bench() -> dict[str, object]:
    """Provision phase of a user template's bake, both ways, on a fresh build host."""
    from builder.local import stack
    from builder.local.mode import LOCAL
    from builder.project import Project
    from tests.bench.bench_provision import PLAYBOOK as COPY_30

    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(shutil.copytree(FIXTURE, Path(tmp) / "zoo"))
        shutil.copy(COPY_30, root / "ansible" / "upgraded.yml")  # the template's playbook
        project = Project.open(str(root), local_mode=LOCAL)
        stack.up(project, build_host=True, deploy_step_seconds=0.2)
        try:
            for mode in ("builder", "template"):
                done = subprocess.run(
                    [sys.executable, "-m", "builder", "--root", str(root), "--local", "-e",
                     f"builder_provisioning={mode}", "bake", "zoo", "dev", "upgraded",
                     "--force"], capture_output=True, text=True, check=False)
                assert done.returncode == 0, done.stderr[-2000:]
                found = re.search(r"provision ([\d.]+)s", done.stdout)
                assert found, done.stdout
                provision_s = float(found.group(1))
                results[f"provision_{mode}_s"] = provision_s
                # Hygiene and checks (builder's finalize playbook) run in both modes: the
                # playbook's own time is the provision phase without them.
                finalize_s = _seconds(done.stderr, "packer: stop") - _seconds(
                    done.stderr, "finalize.yml: task 1/")
                results[f"playbook_{mode}_s"] = round(provision_s - finalize_s, 1)
        finally:
            stack.down(project.layout)
    for part in ("provision", "playbook"):
        builder_s = float(str(results[f"{part}_builder_s"]))
        results[f"{part}_speedup"] = round(float(str(results[f"{part}_template_s"]))
                                           / builder_s, 2)
    results["playbook_speedup_target"] = 4.0
    return results


def _seconds(progress: str, marker: str) -> float:
    """The elapsed time of the first progress line holding `marker`."""
    found = re.search(rf"^\[\s*([\d.]+)s\][^\n]*{re.escape(marker)}", progress, re.MULTILINE)
    assert found, marker
    return float(found.group(1))


if __name__ == "__main__":
    report = main()
    if "--bake" in sys.argv[1:]:
        report["bake"] = bake_bench()
    print(json.dumps(report, indent=2))
