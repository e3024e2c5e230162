"""`builder bake` end to end: the AMI and its lineage tags, build avoidance, --force,
--all, failures and artifacts."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from builder.aws import images
from builder.config.models import Combo
from tests.bake.leftovers import NOTHING_LEFT, ec2, leftovers
from tests.conftest import run_builder

pytestmark = [pytest.mark.slow, pytest.mark.local]

LINEAGE_TAGS = {"Name", "builder:app", "builder:env", "builder:comp", "builder:fingerprint",
                "builder:source-ami", "builder:source-ami-name", "builder:built-at",
                "builder:git-commit", "builder:status", "builder:build-id", "builder:run-id",
                "builder:owner", "builder:packages-sha256",
                "builder:record"}  # the demo sets records_bucket


def bake(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_builder("--local", "bake", *args, "--json", root=root)


def test_bake_tags_skip_and_force(bake_root: Path) -> None:
    first = bake(bake_root, "demo", "dev", "app")
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads(first.stdout)
    assert set(result) == {"app", "env", "comp", "ami_id", "region", "account", "skipped",
                           "fingerprint", "source_ami", "duration_s", "artifacts", "notes",
                           "copies"}
    assert result["skipped"] is False
    assert (result["region"], result["account"]) == ("eu-west-1", "111111111111")

    client = ec2(bake_root)
    image = images.describe(client, image_ids=[result["ami_id"]])[0]
    assert set(image.tags) == LINEAGE_TAGS
    assert image.tags["builder:status"] == "baked"
    assert image.tags["builder:fingerprint"] == result["fingerprint"]
    assert image.tags["builder:source-ami"] == result["source_ami"]
    assert image.tags["Name"] == image.name
    head = subprocess.run(["git", "-C", str(bake_root), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    assert image.tags["builder:git-commit"] == head
    snapshots = client.describe_snapshots(SnapshotIds=list(image.snapshot_ids))["Snapshots"]
    assert snapshots and all({t["Key"]: t["Value"] for t in s["Tags"]} == dict(image.tags)
                             for s in snapshots)

    artifacts = Path(result["artifacts"])
    for name in ("ubuntu.pkr.hcl", "ubuntu.pkrvars.json", "packer.log", "result.json",
                 "fingerprint.json", "ansible-packer-app.jsonl", "ansible-finalize.jsonl"):
        assert (artifacts / name).is_file(), name
    assert json.loads((artifacts / "result.json").read_text())["ami_id"] == result["ami_id"]
    # Everything builder, Packer and Ansible wrote for the bake is its owner's only (the
    # local stack's folder holds the emulator's state and build host file systems).
    state = bake_root / ".builder"
    written = [p for p in state.rglob("*") if not p.is_relative_to(state / "local")]
    assert {oct(p.stat().st_mode & 0o777) for p in written if p.is_dir()} == {"0o700"}
    assert [p for p in written if p.is_file() and p.stat().st_mode & 0o077] == []
    assert {p.name for p in written} >= {"packer.log", "packer.out", "manifest.json"}
    assert "packer: provision" in first.stderr and "slowest" not in first.stdout
    assert leftovers(bake_root) == NOTHING_LEFT

    second = bake(bake_root, "demo", "dev", "app")
    assert second.returncode == 0, second.stderr[-2000:]
    skipped = json.loads(second.stdout)
    assert skipped["skipped"] is True
    assert skipped["ami_id"] == result["ami_id"]
    assert "packer" not in second.stderr

    forced = bake(bake_root, "demo", "dev", "app", "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    again = json.loads(forced.stdout)
    assert again["skipped"] is False
    assert again["ami_id"] != result["ami_id"]
    assert again["fingerprint"] == result["fingerprint"]


def test_text_summary_shows_phases_and_slowest_tasks(bake_root: Path) -> None:
    before = datetime.now(UTC)
    done = run_builder("--local", "bake", "demo", "dev", "worker", "--force",
                       "-e", "ami_deprecate_after_days=7", root=bake_root)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "baked ami-" in done.stdout
    assert "phases: " in done.stdout and "provision" in done.stdout
    assert "slowest tasks:" in done.stdout
    assert "task 1/" in done.stderr
    # ami_deprecate_after_days: EC2 deprecates the new AMI a week on, to the minute.
    ami_id = re.search(r"baked (ami-\w+)", done.stdout)[1]  # type: ignore[index]
    image = images.describe(ec2(bake_root), image_ids=[ami_id])[0]
    assert image.deprecation_time is not None
    assert (before + timedelta(days=7, minutes=-1) <= image.deprecation_time
            <= datetime.now(UTC) + timedelta(days=7))
    assert f"AMI {ami_id}: EC2 deprecates it at" in done.stderr


def test_a_role_change_bakes_again(bake_root: Path) -> None:
    before = bake(bake_root, "demo", "dev", "app")
    assert before.returncode == 0, before.stderr[-2000:]
    role_task = bake_root / "playbooks/roles/app_service/tasks/main.yml"
    original = role_task.read_text()
    # A reviewed change that installs one more small package.
    role_task.write_text(original + "\n- name: Install tree\n  ansible.builtin.apt:\n"
                         "    name: tree\n    install_recommends: false\n")
    try:
        after = bake(bake_root, "demo", "dev", "app")
    finally:
        role_task.write_text(original)
    assert after.returncode == 0, after.stderr[-2000:]
    baked = json.loads(after.stdout)
    assert baked["skipped"] is False
    assert baked["fingerprint"] != json.loads(before.stdout)["fingerprint"]

    # The package manifest: what the image holds, its sha256 on the AMI.
    manifest = Path(baked["artifacts"]) / "packages.json"
    listed = json.loads(manifest.read_text())
    assert listed == sorted(listed, key=lambda p: (p["name"], p["arch"], p["version"]))
    assert {"openssh-server", "tree"} <= {p["name"] for p in listed}
    assert oct(manifest.stat().st_mode & 0o777) == "0o600"
    image = images.describe(ec2(bake_root), image_ids=[baked["ami_id"]])[0]
    assert image.tags["builder:packages-sha256"] == hashlib.sha256(
        manifest.read_bytes()).hexdigest()

    before_ami = json.loads(before.stdout)["ami_id"]
    changed = run_builder("--local", "--json", "diff", before_ami, baked["ami_id"],
                          root=bake_root)
    assert changed.returncode == 0, changed.stderr[-2000:]
    report = json.loads(changed.stdout)
    assert [(c["name"], c["change"]) for c in report["packages"]] == [("tree", "added")]
    assert {(c["part"], c["name"]) for c in report["inputs"]} == {
        ("files", "playbooks/roles/app_service/tasks/main.yml")}
    text = run_builder("--local", "diff", before_ami, baked["ami_id"], root=bake_root)
    assert "1 added" in text.stdout and "tree" in text.stdout


def test_all_comps_in_parallel(bake_root: Path) -> None:
    done = bake(bake_root, "demo", "staging", "--all", "-j", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert [r["comp"] for r in results] == ["app", "worker"]
    assert all(not r["skipped"] and r["account"] == "222222222222" for r in results)
    # Both provisioned at once: the second comp started before the first one finished.
    lines = done.stderr.splitlines()
    first_provision = {comp: next(i for i, line in enumerate(lines)
                                  if f"demo/staging/{comp}: provisioning" in line)
                       for comp in ("app", "worker")}
    first_image = {comp: next(i for i, line in enumerate(lines)
                              if f"demo/staging/{comp}: packer: image" in line)
                   for comp in ("app", "worker")}
    assert max(first_provision.values()) < min(first_image.values())


def test_a_failing_task_fails_the_bake_and_leaves_nothing(bake_root: Path) -> None:
    playbook = bake_root / "playbooks/demo/packer-worker.yml"
    original = playbook.read_text()
    playbook.write_text(original + "  tasks:\n    - name: Break on purpose\n"
                        "      ansible.builtin.command: /bin/false\n")
    try:
        before = {i.id for i in images.images_of(ec2(bake_root), _combo("dev", "worker"))}
        done = run_builder("--local", "bake", "demo", "dev", "worker", root=bake_root)
    finally:
        playbook.write_text(original)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "Break on purpose" in last and "127.0.0.1" in last
    after = {i.id for i in images.images_of(ec2(bake_root), _combo("dev", "worker"))}
    assert after == before
    assert leftovers(bake_root) == NOTHING_LEFT


def test_image_checks_catch_a_planted_private_key(bake_root: Path) -> None:
    playbook = bake_root / "playbooks/demo/packer-worker.yml"
    original = playbook.read_text()
    playbook.write_text(original + "  tasks:\n    - name: Leave a deploy key behind\n"
                        "      ansible.builtin.copy:\n        dest: /root/.ssh/id_ed25519\n"
                        "        mode: '0600'\n        content: |\n"
                        "          -----BEGIN OPENSSH PRIVATE KEY-----\n"
                        "          b3BlbnNzaC1rZXktdjEAAAAA\n"
                        "          -----END OPENSSH PRIVATE KEY-----\n")
    try:
        done = run_builder("--local", "bake", "demo", "dev", "worker", root=bake_root)
    finally:
        playbook.write_text(original)
    assert done.returncode == 1
    assert "check" in done.stderr.strip().splitlines()[-1]
    assert "private key" in done.stderr.lower()
    assert leftovers(bake_root) == NOTHING_LEFT


def test_unknown_comp_is_bad_input_and_touches_nothing(bake_root: Path) -> None:
    done = run_builder("--local", "bake", "demo", "dev", "nope", root=bake_root)
    assert done.returncode == 2
    assert "comp 'nope' is not in this env's components" in done.stderr
    assert leftovers(bake_root) == NOTHING_LEFT


def _combo(env: str, comp: str) -> Combo:
    return Combo("demo", env, comp)
