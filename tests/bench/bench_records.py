"""Package records benchmarks:

(a) `diff` of two 2,000-package manifests (build folders as bakes leave them; 334
    upgrades, 50 added, 50 removed): the comparison against reading the two manifests
    alone (the baseline), budget 0.3 s.
(b) the package-manifest step within one real local bake (needs root, like the build
    host): the finalize playbook's "Package manifest" play, timed from its events file
    (its start to the playbook's end), plus builder's own part (parse the list, write
    packages.json, hash it), against the same bake's total; budget 1.5 s. The records
    bucket upload of that bake is shown beside it.

    .venv/bin/python -m tests.bench.bench_records [--runs 20] [--no-bake]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from builder import records
from builder.bake.packages import Package, load_manifest, parse_list, write_manifest
from builder.config.models import Combo
from builder.local.mode import LOCAL
from builder.pipelines.diff import compare
from builder.project import Project
from tests.conftest import commit_all, copy_demo, stack_for_bakes

DIFF_BUDGET_S = 0.3
MANIFEST_BUDGET_S = 1.5
PACKAGES = 2000
MANIFEST_PLAY = "Package manifest"


def _median(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _manifests(folder: Path) -> tuple[Path, Path]:
    before = [Package(f"pkg{i:04d}", "amd64", f"1:{i % 7}.{i % 13}.{i}-{i % 5}ubuntu1",
                      f"src{i // 3}") for i in range(PACKAGES)]
    after = [Package(p.name, p.arch, p.version + ("+deb12u1" if i % 6 == 0 else ""), p.source)
             for i, p in enumerate(before) if i % 40 != 1]
    after += [Package(f"new{i:03d}", "all", f"0.{i}", f"new{i:03d}") for i in range(50)]
    paths = []
    for name, found in (("one", before), ("two", after)):
        (folder / name).mkdir()
        write_manifest(folder / name, found)
        paths.append(folder / name)
    return paths[0], paths[1]


def bench_diff(runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as temp:
        one, two = _manifests(Path(temp))

        def diff() -> object:
            return compare(records.BuildRecord.from_folder("ami-1", one),
                           records.BuildRecord.from_folder("ami-2", two))

        def read() -> object:
            return load_manifest(one / "packages.json"), load_manifest(two / "packages.json")

        result = compare(records.BuildRecord.from_folder("ami-1", one),
                         records.BuildRecord.from_folder("ami-2", two))
        diff_s, read_s = _median(runs, diff), _median(runs, read)
    return {"packages": PACKAGES, "counts": result.counts(), "diff_s": round(diff_s, 4),
            "read_only_s": round(read_s, 4), "ratio_vs_read": round(diff_s / read_s, 2),
            "budget_s": DIFF_BUDGET_S, "within_budget": diff_s <= DIFF_BUDGET_S}


def _play_seconds(events_file: Path, play: str) -> float:
    """From the play's start event to the next play's start (or the playbook's stats)."""
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line]
    starts = [e for e in events
              if e["event"] in ("playbook_on_play_start", "playbook_on_stats")]
    for event, following in itertools.pairwise(starts):
        if event["event"] == "playbook_on_play_start" and event.get("play") == play:
            return (datetime.fromisoformat(following["created"])
                    - datetime.fromisoformat(event["created"])).total_seconds()
    raise SystemExit(f"no play {play!r} in {events_file}")


def bench_manifest_in_a_bake() -> dict[str, Any]:
    combo = Combo("demo", "dev", "worker")
    with tempfile.TemporaryDirectory(prefix="bench-records-") as temp:
        root = copy_demo(Path(temp) / "infra")
        commit_all(root)
        with stack_for_bakes(root):
            from builder.bake.build import BakeOptions, bake

            project = Project.open(str(root), local_mode=LOCAL)
            result = bake(project, combo, options=BakeOptions(force=True))
            assert result.artifacts is not None
            artifacts = result.artifacts
            play_s = _play_seconds(artifacts / "ansible-finalize.jsonl", MANIFEST_PLAY)
            found = load_manifest(artifacts / "packages.json")
            listed = "".join(f"{p.name}\t{p.version}\t{p.arch}\t{p.source}\tinstalled\n"
                             for p in found)
            with tempfile.TemporaryDirectory() as scratch:
                builder_s = _median(5, lambda: write_manifest(Path(scratch),
                                                              parse_list(listed)))
            resolved = project.resolve(combo.app, combo.env, combo.comp)
            bucket = resolved.settings.records_bucket
            assert bucket
            started = time.perf_counter()
            records.upload_build(project.env_aws(resolved), bucket, combo, "ami-bench",
                                 artifacts)
            upload_s = time.perf_counter() - started
    step_s = play_s + builder_s
    return {"packages": len(found), "bake_total_s": round(result.duration_s, 2),
            "manifest_play_s": round(play_s, 3), "builder_part_s": round(builder_s, 4),
            "manifest_step_s": round(step_s, 3),
            "share_of_bake": round(step_s / result.duration_s, 4),
            "records_upload_s": round(upload_s, 3),
            "budget_s": MANIFEST_BUDGET_S, "within_budget": step_s <= MANIFEST_BUDGET_S}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_records")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-bake", action="store_true", help="only (a)")
    options = parser.parse_args(argv)
    report: dict[str, Any] = {"diff": bench_diff(options.runs)}
    if not options.no_bake:
        report["manifest_in_a_bake"] = bench_manifest_in_a_bake()
    print(json.dumps(report, indent=2))
    return 0 if all(part["within_budget"] for part in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
