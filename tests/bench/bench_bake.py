"""Bake benchmarks in local mode (needs root, like the build host):

(a) provisioning by builder (ansible-runner over direct SSH, mitogen) vs. the same
    playbook through Packer 1.6.6's own `ansible` provisioner (its SSH proxy), each on a
    fresh build host: the 30-task playbook and the demo app's playbook. Packer's time is
    a build with the provisioner minus the same build without it.
(b) a whole `builder bake --force` vs. raw `packer build` + raw `ansible-playbook` doing
    the same work (same rendered template, the comp playbook then builder's finalize
    playbook, same strategy, a fresh build host, the same key pair and security group).
(c) a skipped bake (inputs unchanged).
(d) `bake --all -j 2` on two comps vs. one comp.

    .venv/bin/python -m tests.bench.bench_bake [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from builder import packer, process
from builder.aws import AwsTarget, images, temporary
from builder.config.layout import Layout
from builder.local import buildhost, stack
from builder.local.mode import LOCAL
from builder.project import Project
from builder.provision import ansible
from builder.provision.steps import FINALIZE_PLAYBOOK
from tests.bench.bench_provision import PLAYBOOK as COPY_30
from tests.conftest import copy_demo

DEV = AwsTarget("111111111111", "eu-west-1")

PACKER_ONLY = """
variable "endpoint" { type = string }
variable "source_ami" { type = string }
variable "ssh_port" { type = number }
variable "key_name" { type = string }
variable "key_file" { type = string }
variable "playbook" { type = string }
variable "extra_vars" { type = string }
variable "roles_path" { type = string }
variable "use_ansible" { type = bool }
source "amazon-ebs" "bench" {
  region = "eu-west-1"
  custom_endpoint_ec2 = var.endpoint
  skip_region_validation = true
  source_ami = var.source_ami
  instance_type = "t3.micro"
  ami_name = "bench-${uuidv4()}"
  ssh_username = "ubuntu"
  ssh_host = "127.0.0.1"
  ssh_port = var.ssh_port
  ssh_keypair_name = var.key_name
  ssh_private_key_file = var.key_file
}
locals {
  ssh_args = join(" ", ["-o HostKeyAlgorithms=+ssh-rsa", "-o PubkeyAcceptedAlgorithms=+ssh-rsa",
                        "-o ControlMaster=auto", "-o ControlPersist=60s"])
}
build {
  sources = ["source.amazon-ebs.bench"]
  provisioner "ansible" {
    only = var.use_ansible ? ["amazon-ebs.bench"] : ["none"]
    playbook_file = var.playbook
    user = "ubuntu"
    extra_arguments = ["-e", "@${var.extra_vars}"]
    ansible_env_vars = [
      "ANSIBLE_HOST_KEY_CHECKING=False",
      "ANSIBLE_ROLES_PATH=${var.roles_path}",
      # Packer 1.6.6's SSH proxy offers only ssh-rsa, which current OpenSSH refuses.
      "ANSIBLE_SSH_ARGS=${local.ssh_args}",
    ]
  }
}
"""

RAW_TEMPLATE_PROVISION = """#!/bin/sh
set -e
cd {root}
for book in {playbook} {finalize}; do
  {ansible_playbook} -i "$BUILDER_BUILD_HOST," -u ubuntu --private-key {key} \\
    -e ansible_port=$BUILDER_BUILD_PORT -e @{vars} -e @{finalize_vars} $book
done
"""


def builder(root: Path, *args: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "builder", "--root", str(root), "--local",
                           *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return time.perf_counter() - start


def median(times: list[float]) -> float:
    return round(statistics.median(times), 2)


class Bench:
    def __init__(self, root: Path, runs: int):
        self.root = root
        self.runs = runs
        self.project = Project.open(str(root), local_mode=LOCAL)
        self.env_aws = self.project.aws.env(DEV)
        self.ec2 = self.env_aws.client("ec2")
        self.work = Path(tempfile.mkdtemp(prefix="bench-bake-"))
        self.key = self.work / "id_ed25519"
        process.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)],
                    what="ssh-keygen")
        self.public_key = self.key.with_suffix(".pub").read_text().strip()
        temporary.import_key_pair(self.ec2, "bench", self.public_key, {"bench": "1"})
        resolved = self.project.resolve("demo", "dev", "app")
        self.source = images.resolve_source(self.ec2, resolved.settings).id
        self.app_vars = self.work / "app-vars.json"
        self.app_vars.write_text(json.dumps({**resolved.values,
                                             "codedeploy_agent_install": False}, default=str))

    def fresh_host(self) -> Any:
        return buildhost.build_host(Layout(self.root), user="ubuntu",
                                    authorized_key=self.public_key)

    # (a) ------------------------------------------------------------------------
    def builder_provisioning(self, playbook: Path, extravars: dict[str, Any]) -> float:
        times = []
        for _ in range(self.runs):
            with self.fresh_host() as host:
                target = ansible.SshTarget(host.host, host.port, host.user, self.key)
                start = time.perf_counter()
                ansible.run_playbook(self.project.layout, playbook, target, extravars,
                                     artifacts_dir=self.work, vault_password=None,
                                     progress=lambda _: None, cancel=threading.Event())
                times.append(time.perf_counter() - start)
        return median(times)

    def packer_provisioning(self, playbook: Path) -> tuple[float, float]:
        template = self.work / "packer-only.pkr.hcl"
        template.write_text(PACKER_ONLY)

        def build(use_ansible: bool) -> float:
            with self.fresh_host() as host:
                var_file = self.work / "packer-only.pkrvars.json"
                var_file.write_text(json.dumps({
                    "endpoint": self.project.aws.local_endpoint, "source_ami": self.source,
                    "ssh_port": host.port, "key_name": "bench", "key_file": str(self.key),
                    "playbook": str(playbook), "extra_vars": str(self.app_vars),
                    "roles_path": os.pathsep.join(map(str, self.project.layout.roles_dirs())),
                    "use_ansible": use_ansible}))
                env = {**self.env_aws.credentials_env(), "CHECKPOINT_DISABLE": "1",
                       "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
                start = time.perf_counter()
                process.run(packer.build_argv(template, var_file), what="packer build",
                            cwd=self.work, env=env)
                return time.perf_counter() - start

        with_ansible = median([build(True) for _ in range(self.runs)])
        without = median([build(False) for _ in range(self.runs)])
        return with_ansible, round(with_ansible - without, 2)

    # (b) ------------------------------------------------------------------------
    def raw_bake(self) -> float:
        """The same work by hand: rendered template, a build host, raw ansible-playbook
        for the comp playbook and builder's finalize playbook (with mitogen, as builder)."""
        artifacts = sorted((self.root / ".builder/builds/demo/dev/app").iterdir())[-1]
        strategy_dir = ansible._mitogen_strategy_dir()
        finalize_vars = self.work / "finalize-vars.json"
        finalize_vars.write_text(json.dumps({"builder_authorized_key": self.public_key,
                                             "builder_comp_checks": str(
                                                 self.root / "playbooks/demo/checks-app.yml"),
                                             "builder_skip_hygiene": False}))
        script = self.work / "raw-provision.sh"
        script.write_text(RAW_TEMPLATE_PROVISION.format(
            root=self.root, playbook=self.root / "playbooks/demo/packer-app.yml",
            finalize=FINALIZE_PLAYBOOK, ansible_playbook=ansible.tool("ansible-playbook"),
            key=self.key, vars=self.app_vars, finalize_vars=finalize_vars))
        script.chmod(0o755)
        times = []
        for _ in range(self.runs):
            start = time.perf_counter()
            group = temporary.create_security_group(
                self.ec2, f"raw-{time.time_ns()}", temporary.vpc_for_build(self.ec2, {}),
                ["0.0.0.0/0"], {"bench": "1"})
            with self.fresh_host() as host:
                values = json.loads((artifacts / "ubuntu.pkrvars.json").read_text())
                values.update({"builder_ssh_port": host.port, "builder_ssh_keypair_name": "bench",
                               "builder_ssh_private_key_file": str(self.key),
                               "builder_security_group_id": group,
                               "builder_provision_command": str(script),
                               "builder_build_time": "",
                               "builder_manifest": str(self.work / "manifest.json")})
                var_file = self.work / "raw.pkrvars.json"
                var_file.write_text(json.dumps(values))
                template = self.work / "ubuntu.pkr.hcl"
                template.write_text((artifacts / "ubuntu.pkr.hcl").read_text())
                env = {**self.env_aws.credentials_env(), "CHECKPOINT_DISABLE": "1",
                       "ANSIBLE_ROLES_PATH": os.pathsep.join(
                           map(str, self.project.layout.roles_dirs())),
                       "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_PIPELINING": "1",
                       "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
                       "ANSIBLE_STRATEGY_PLUGINS": str(strategy_dir),
                       "ANSIBLE_STRATEGY": "mitogen_linear"}
                process.run(packer.build_argv(template, var_file), what="raw packer build",
                            cwd=self.work, env=env)
            temporary.delete_security_group(self.ec2, group)
            times.append(time.perf_counter() - start)
        return median(times)


def main(runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {"runs": runs}
    with tempfile.TemporaryDirectory(prefix="bench-bake-") as tmp:
        root = copy_demo(Path(tmp) / "infra")
        project = Project.open(str(root), local_mode=LOCAL)
        stack.up(project, build_host=True)
        try:
            bench = Bench(root, runs)
            # (a)
            ours = bench.builder_provisioning(COPY_30, {"app": "bench"})
            _, theirs_provisioning = bench.packer_provisioning(COPY_30)
            results["a_copy30_builder_s"] = ours
            results["a_copy30_packer_ansible_s"] = theirs_provisioning
            results["a_copy30_speedup"] = round(theirs_provisioning / ours, 2)
            results["a_copy30_speedup_target"] = 4.0
            demo_playbook = root / "playbooks/demo/packer-app.yml"
            app_vars = json.loads(bench.app_vars.read_text())
            ours = bench.builder_provisioning(demo_playbook, app_vars)
            _, theirs_provisioning = bench.packer_provisioning(demo_playbook)
            results["a_demo_app_builder_s"] = ours
            results["a_demo_app_packer_ansible_s"] = theirs_provisioning
            results["a_demo_app_speedup"] = round(theirs_provisioning / ours, 2)
            # (b)
            ours_bake = median([builder(root, "bake", "demo", "dev", "app", "--force")
                                for _ in range(runs)])
            raw = bench.raw_bake()
            results["b_builder_bake_s"] = ours_bake
            results["b_raw_packer_ansible_s"] = raw
            results["b_overhead_pct"] = round((ours_bake / raw - 1) * 100, 1)
            results["b_overhead_target_pct"] = 10
            # (c)
            results["c_skipped_bake_s"] = median([builder(root, "bake", "demo", "dev", "app")
                                                  for _ in range(5)])
            results["c_skipped_target_s"] = 2.0
            # (d)
            one = median([builder(root, "bake", "demo", "staging", "app", "--force")
                          for _ in range(runs)])
            both = median([builder(root, "bake", "demo", "staging", "--all", "-j", "2",
                                   "--force") for _ in range(runs)])
            results["d_one_comp_s"] = one
            results["d_two_comps_j2_s"] = both
            results["d_ratio"] = round(both / one, 2)
            results["d_ratio_target"] = 1.3
        finally:
            stack.down(project.layout)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    print(json.dumps(main(parser.parse_args().runs), indent=2))
