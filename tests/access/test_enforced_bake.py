"""A real bake (Packer, Ansible, the local build host) with IAM enforced: builder's
calls and Packer's amazon-ebs calls all go through the env's role, which holds exactly
the generated policy; then the baked AMI is released."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.local import iam as local_iam
from builder.local import stack
from builder.local.mode import LOCAL
from builder.project import Project
from tests.conftest import copy_demo, require_root, run_builder

pytestmark = [pytest.mark.slow, pytest.mark.local]


@pytest.fixture(scope="module")
def enforced_bake_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_root()
    root = copy_demo(tmp_path_factory.mktemp("enforced-bake") / "infra")
    subprocess.run(["git", "-C", str(root), "init", "-q"], check=True)
    project = Project.open(str(root), local_mode=LOCAL)
    up = stack.up(project, build_host=True, deploy_step_seconds=0.2, enforce_iam=True)
    assert up.enforcement is not None
    try:
        yield root
    finally:
        stack.down(project.layout)


def test_bake_and_release_under_the_generated_policy(enforced_bake_root: Path) -> None:
    baked = run_builder("--local", "bake", "demo", "dev", "app", "--release", "--json",
                        root=enforced_bake_root)
    assert baked.returncode == 0, baked.stderr[-3000:]
    assert "is not authorized to perform" not in baked.stderr
    assert '"verified"' in baked.stdout, baked.stdout


def test_packer_is_held_to_the_policy_too(enforced_bake_root: Path) -> None:
    project = Project.open(str(enforced_bake_root), local_mode=LOCAL)
    local_iam.enforce(project, without={"ec2:CreateImage"})  # only Packer calls it
    try:
        failed = run_builder("--local", "bake", "demo", "dev", "worker", "--force",
                             root=enforced_bake_root)
    finally:
        local_iam.enforce(project)
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "ec2:CreateImage" in failed.stderr, failed.stderr[-3000:]


def test_a_kept_host_and_its_reap_under_the_generated_policy(enforced_bake_root: Path) -> None:
    """--keep-on-failure's calls (find, tag the run's resources kept) and reap --run-id's
    are in the policies."""
    playbook = enforced_bake_root / "playbooks/demo/packer-worker.yml"
    original = playbook.read_text()
    playbook.write_text(original + "  tasks:\n    - name: Break on purpose\n"
                        "      ansible.builtin.command: /bin/false\n")
    try:
        failed = run_builder("--local", "bake", "demo", "dev", "worker", "--force",
                             "--keep-on-failure", root=enforced_bake_root)
    finally:
        playbook.write_text(original)
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "is not authorized to perform" not in failed.stderr, failed.stderr[-3000:]
    last = failed.stderr.strip().splitlines()[-1]
    assert "kept for debugging" in last, last
    run_id = last.rsplit("--run-id ", 1)[1].split("`")[0]
    reaped = run_builder("--local", "reap", "--run-id", run_id, "--json",
                         root=enforced_bake_root)
    assert reaped.returncode == 0, reaped.stderr[-3000:]
    assert '"instances": [' in reaped.stdout and run_id not in str(
        list((enforced_bake_root / ".builder" / "kept").glob("*")))
