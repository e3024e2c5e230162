"""What "baked means complete" and the bake lock add to every bake, on its own local
stack (AWS emulator only): the AWS calls and seconds of taking and releasing the bake
lock plus the final retag to `baked` (AMI and snapshots). Targets: at most 3 calls and
0.3 s.

    .venv/bin/python -m tests.bench.bench_faults [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from builder.aws import images
from builder.config.models import Combo
from builder.local import stack
from builder.local.mode import LOCAL
from builder.project import Project
from builder.release import lock
from tests.conftest import copy_demo
from tests.release.emulated import make_ami

TARGET_CALLS = 3
TARGET_SECONDS = 0.3


def main(runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        root = copy_demo(Path(tmp) / "infra")
        project = Project.open(str(root), local_mode=LOCAL)
        stack.up(project, build_host=False)
        try:
            combo = Combo("demo", "dev", "app")
            env_aws = project.env_aws(project.resolve(combo.app, combo.env, combo.comp))
            ec2 = env_aws.client("ec2")
            image = images.describe(ec2, image_ids=[make_ami(project, combo)])[0]
            with lock.held(env_aws, combo, minutes=1, purpose=lock.BAKE):
                pass  # the lock table exists from here on, as after a first bake
            calls = project.aws.call_log.total()
            started = time.monotonic()
            for _ in range(runs):
                with lock.held(env_aws, combo, minutes=1, purpose=lock.BAKE):
                    images.set_tags(ec2, image, {images.TAG_STATUS: images.AmiStatus.BAKED})
            seconds = (time.monotonic() - started) / runs
            per_bake = (project.aws.call_log.total() - calls) / runs
        finally:
            stack.down(project.layout)
    return {"calls_per_bake": per_bake, "target_calls": TARGET_CALLS,
            "seconds_per_bake": round(seconds, 4), "target_seconds": TARGET_SECONDS,
            "ok": per_bake <= TARGET_CALLS and seconds <= TARGET_SECONDS}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    report = main(parser.parse_args().runs)
    print(json.dumps(report, indent=2))
    raise SystemExit(0 if report["ok"] else 1)
