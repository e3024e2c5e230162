"""Foundation benchmarks: `validate --offline` on 400 combos, and `builder --help`
against a minimal typer app with the same commands."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import typer.main

from builder.cli import app

APPS, ENVS, COMPS = 20, 4, 5
REPO = Path(__file__).resolve().parents[2]


def generate_repo(root: Path) -> int:
    """20 apps, 4 envs and 5 comps each, sharing the bundled template."""
    for a in range(APPS):
        app_dir = root / "vars" / f"app{a:02d}"
        (app_dir / "common").mkdir(parents=True)
        (app_dir / "common" / "common.yml").write_text(
            "source_ami_filter:\n  owners: ['099720109477']\n  name: 'ubuntu/images/*'\n"
            "service_name: '{{ app }}-{{ comp }}'\nport: 8080\n")
        playbooks = root / "playbooks" / f"app{a:02d}"
        playbooks.mkdir(parents=True)
        for c in range(COMPS):
            (app_dir / "common" / f"c{c}.yml").write_text(f"port: {8000 + c}\n")
            (playbooks / f"packer-c{c}.yml").write_text("- hosts: all\n  tasks: []\n")
        for e in range(ENVS):
            env_dir = app_dir / f"e{e}"
            env_dir.mkdir()
            (env_dir / "common.yml").write_text(
                f"components: [{', '.join(f'c{c}' for c in range(COMPS))}]\n"
                f"aws_region: eu-west-{1 + e % 3}\naws_account_id: '{100000000000 + e}'\n")
    return APPS * ENVS * COMPS


def timed(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def minimal_app_source() -> str:
    """A typer app with the same command names, each doing nothing."""
    group = typer.main.get_command(app)
    lines = ["import typer", "app = typer.Typer()", "local = typer.Typer()",
             "app.add_typer(local, name='local')"]
    for name in group.commands:  # type: ignore[attr-defined]
        if name == "local":
            continue
        lines += [f"@app.command('{name}')", f"def c_{name.replace('-', '_')}() -> None:",
                  "    'help'"]
    lines += ["@local.command('up')", "def up() -> None:", "    'help'", "app()"]
    return "\n".join(lines) + "\n"


def merge_bench(keys: int = 50_000) -> dict[str, object]:
    """Parsing a vars file of 50,000 keys and merging it over a layer of half as many."""
    from builder.config.source import load_mapping, merge

    over_text = "".join(f"key{i}: {i}\n" for i in range(keys))
    base = load_mapping("".join(f"key{i}: {{a: 1}}\n" for i in range(0, keys, 2)),
                        Path("base.yml"))
    start = time.perf_counter()
    over = load_mapping(over_text, Path("over.yml"))
    parsed = time.perf_counter()
    merged = merge(base, over)
    done = time.perf_counter()
    assert len(merged.values) == keys
    return {"parse_50k_keys_s": round(parsed - start, 2),
            "merge_50k_keys_s": round(done - parsed, 2), "merge_50k_keys_target_s": 1.0}


def main() -> dict[str, object]:
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        combos = generate_repo(root)
        argv = [sys.executable, "-m", "builder", "--root", str(root), "validate", "--offline",
                "--json"]
        runs = timed(argv, 3)
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        report = json.loads(done.stdout)
        assert report["ok"] and len(report["results"]) == combos, done.stderr[-500:]
        results["validate_offline_400_s"] = round(statistics.median(runs), 2)
        results["validate_offline_400_target_s"] = 5.0

        results.update(merge_bench())

        minimal = Path(tmp) / "minimal.py"
        minimal.write_text(minimal_app_source())
        timed([sys.executable, "-m", "builder", "--help"], 1)  # warm the bytecode cache
        ours = statistics.median(timed([sys.executable, "-m", "builder", "--help"], 7))
        base = statistics.median(timed([sys.executable, str(minimal), "--help"], 7))
        results["help_s"] = round(ours, 3)
        results["help_minimal_typer_s"] = round(base, 3)
        results["help_ratio"] = round(ours / base, 2)
        results["help_ratio_target"] = 1.2
    return results


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
