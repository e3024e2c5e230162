"""Provisioning benchmark on fresh local build hosts (needs root, like the build host).

Times tests/bench/playbooks/copy-30.yml (30 small `copy` tasks) run
  - by builder's run_playbook with mitogen (the default) and with `linear`,
  - by plain `ansible-playbook` (linear): with the same settings as builder's runs
    (pipelining on), and with Ansible's defaults;
and with --demo, builder's whole provisioning (playbook + hygiene + checks) of the demo
app's comps with each strategy. Every measurement gets its own fresh build host; its
start is not timed.

    .venv/bin/python tests/bench/bench_provision.py [--runs 3] [--demo] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from builder import process
from builder.config.layout import Layout
from builder.local.buildhost import build_host, ensure_image
from builder.project import Project
from builder.provision.ansible import SshTarget, Strategy, run_playbook, tool
from builder.provision.steps import provision

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "copy-30.yml"


@contextmanager
def fresh_host(root: Path, key: Path) -> Iterator[SshTarget]:
    with build_host(Layout(root), user="ubuntu",
                    authorized_key=key.with_suffix(".pub").read_text()) as host:
        yield SshTarget(host.host, host.port, host.user, key)


def builder_run(strategy: Strategy) -> Callable[[Path, SshTarget, Path], None]:
    def run(root: Path, target: SshTarget, artifacts: Path) -> None:
        run_playbook(Layout(root), PLAYBOOK, target, {"app": "bench"}, artifacts_dir=artifacts,
                     vault_password=None, strategy=strategy, progress=lambda _: None,
                     cancel=threading.Event())
    return run


def plain_run(pipelining: bool) -> Callable[[Path, SshTarget, Path], None]:
    def run(root: Path, target: SshTarget, artifacts: Path) -> None:
        settings = {"ANSIBLE_HOST_KEY_CHECKING": "False",
                    "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
                    "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s "
                                        "-o UserKnownHostsFile=/dev/null",
                    "ANSIBLE_PIPELINING": "1" if pipelining else "0"}
        process.run([tool("ansible-playbook"), "-i", f"{target.host},", "-u", target.user,
                     "--private-key", str(target.private_key), "-e", f"ansible_port={target.port}",
                     "-e", "app=bench", str(PLAYBOOK)],
                    what="ansible-playbook", cwd=artifacts, env=settings)
    return run


def demo_run(comp: str, strategy: Strategy) -> Callable[[Path, SshTarget, Path], None]:
    def run(root: Path, target: SshTarget, artifacts: Path) -> None:
        project = Project.open(str(root), overrides={"builder_ansible_strategy": strategy})
        provision(project.layout, project.resolve("demo", "dev", comp), target,
                  artifacts_dir=artifacts, vault_password=None, progress=lambda _: None,
                  cancel=threading.Event(), local=True)
    return run


def measure(name: str, action: Callable[[Path, SshTarget, Path], None], root: Path, key: Path,
            runs: int) -> dict[str, object]:
    times = []
    for index in range(runs):
        artifacts = root / ".bench" / f"{name.replace(' ', '-')}-{index}"
        artifacts.mkdir(parents=True)
        with fresh_host(root, key) as target:
            started = time.perf_counter()
            action(root, target, artifacts)
            times.append(time.perf_counter() - started)
    return {"name": name, "runs": runs, "median_s": round(statistics.median(times), 2),
            "min_s": round(min(times), 2), "max_s": round(max(times), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--demo", action="store_true", help="also the demo app's provisioning")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ensure_image(lambda message: print(message, file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="builder-bench-") as tmp:
        root = Path(tmp) / "infra"
        for part in ("vars", "playbooks", "packer"):
            shutil.copytree(REPO / part, root / part)
        key = Path(tmp) / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
        cases: list[tuple[str, Callable[[Path, SshTarget, Path], None]]] = [
            ("30 copies: builder, mitogen", builder_run("mitogen")),
            ("30 copies: builder, linear", builder_run("linear")),
            ("30 copies: ansible-playbook, linear, pipelining", plain_run(pipelining=True)),
            ("30 copies: ansible-playbook, linear, defaults", plain_run(pipelining=False)),
        ]
        if args.demo:
            cases += [(f"demo {comp}: builder provisioning, {strategy}", demo_run(comp, strategy))
                      for comp in ("app", "worker") for strategy in ("mitogen", "linear")]
        results = [measure(name, action, root, key, args.runs) for name, action in cases]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    width = max(len(str(r["name"])) for r in results)
    for r in results:
        print(f"{r['name']:<{width}}  median {r['median_s']:6.2f}s  "
              f"(min {r['min_s']:.2f}, max {r['max_s']:.2f}, {r['runs']} runs)")


if __name__ == "__main__":
    main()
