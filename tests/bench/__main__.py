"""`make bench`: every benchmark, one after the other, each printing its own JSON.

    .venv/bin/python -m tests.bench [NAME ...]     (names: foundation provision bake
                                                    release rebuild access faults adopted
                                                    templates local_state records status
                                                    regions;
                                                    default all)
"""

from __future__ import annotations

import subprocess
import sys

BENCHES = {
    "foundation": [],
    "provision": ["--json"],
    "bake": [],
    "release": [],
    "rebuild": [],
    "access": [],
    "faults": [],
    "adopted": [],
    "templates": [],
    "local_state": [],
    "records": [],
    "status": [],
    "regions": [],
}


def main(names: list[str]) -> int:
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        sys.stderr.write(f"unknown benchmarks {unknown}; known: {', '.join(BENCHES)}\n")
        return 2
    failed = []
    for name in names or list(BENCHES):
        print(f"== {name}", flush=True)
        done = subprocess.run([sys.executable, "-m", f"tests.bench.bench_{name}",
                               *BENCHES[name]], check=False)
        if done.returncode != 0:
            failed.append(name)
    if failed:
        sys.stderr.write(f"benchmarks that failed: {', '.join(failed)}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
