"""Template adaptation: what adapting a user template adds to `render`, beside the
bundled template's render (target: at most 50 ms added).

    .venv/bin/python -m tests.bench.bench_templates
"""

from __future__ import annotations

import json
import shutil
import statistics
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


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
