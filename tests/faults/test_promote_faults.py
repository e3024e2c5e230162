"""Faults during promotion staging → prod (another account, another region, a KMS grant):
SIGINT while copying; kill -9 while copying, then a re-run or `reap`; an incomplete twin
copy; two promotions at once; prune and release next to incomplete AMIs. After each:
no share, grant, incomplete copy or lock is left, and a re-run ends verified."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from builder.aws import fleet
from builder.aws import images as amis
from builder.config.models import Combo
from builder.project import Project
from builder.release import lock
from tests.faults.leftovers import (
    Seen,
    last_line,
    read_until,
    record,
    run,
    seen,
    shares,
    start,
)
from tests.pipelines.test_promote import copies_of, env_aws, verified_in_staging

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.local]

PROD_APP = Combo("demo", "prod", "app")
KILLED_PID = 2**22 + 1  # above Linux's pid_max: no such process, ever


@pytest.fixture
def tmp() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="faults-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def promote(root: Path, tmp: Path, *args: str, signal_at: str | None = None
            ) -> tuple[int, str, dict[str, Any]]:
    done = run(root, tmp, "promote", "demo", "app", "--to", "prod", "--json", *args,
               signal_at=signal_at)
    return done.returncode, done.stderr, json.loads(done.stdout) if done.stdout else {}


def state(project: Project, tmp: Path, source: amis.Image) -> Seen:
    return seen(env_aws(project, "prod"), project.root, tmp,
                shares_of=(env_aws(project, "staging"), source))


def test_sigint_while_copying(local_stack: Project, tmp: Path) -> None:
    source = verified_in_staging(local_stack)
    before = state(local_stack, tmp, source)

    code, stderr, _ = promote(local_stack.root, tmp, signal_at="SIGINT@^copying ami-")

    assert code == 130, stderr[-3000:]
    left = state(local_stack, tmp, source).new_since(before)
    assert not any(left.values()), left
    # The emulator copies at once: the copy may have completed (and been tagged) before
    # the interrupt was seen; then it is complete, and the re-run reuses it.
    copies = copies_of(local_stack, source)
    assert all(c.status == amis.AmiStatus.BAKED for c in copies), copies
    code, stderr, done = promote(local_stack.root, tmp)
    assert code == 0, stderr[-3000:]
    assert done["reused"] is bool(copies)
    assert done["release"]["outcome"] == "verified"
    record("promote: SIGINT while copying", "SIGINT", left, "verified")


def test_kill_9_while_copying_then_a_re_run(local_stack: Project, tmp: Path) -> None:
    source = verified_in_staging(local_stack)
    before = state(local_stack, tmp, source)

    code, _, _ = promote(local_stack.root, tmp, signal_at="SIGKILL@^copying ami-")

    assert code == -9
    crashed = state(local_stack, tmp, source).new_since(before)
    assert crashed["shares"] and crashed["incomplete_amis"]  # shared, copy not tagged baked
    assert crashed["locks"] == ["demo/prod/app"]
    code, stderr, done = promote(local_stack.root, tmp)
    assert code == 1 and "that process is gone (killed): --break-lock" in stderr

    code, stderr, done = promote(local_stack.root, tmp, "--break-lock")

    assert code == 0, stderr[-3000:]
    assert "removing the share" in stderr
    assert (done["reused"], done["ami_id"]) == (True, crashed["incomplete_amis"][0])
    assert done["release"]["outcome"] == "verified"
    left = state(local_stack, tmp, source).new_since(before)
    assert not any(left.values()), left
    assert [c.status for c in copies_of(local_stack, source)] == [amis.AmiStatus.VERIFIED]
    record("promote: kill -9 while copying, re-run", "SIGKILL", left,
           "verified (--break-lock)")


def test_kill_9_while_copying_then_reap(local_stack: Project, tmp: Path) -> None:
    source = verified_in_staging(local_stack)
    before = state(local_stack, tmp, source)
    code, _, _ = promote(local_stack.root, tmp, signal_at="SIGKILL@^copying ami-")
    assert code == -9

    listed = run(local_stack.root, tmp, "reap", "--dry-run", "--json")
    assert listed.returncode == 0, listed.stderr
    kinds = json.loads(listed.stdout)["by_kind"]
    assert kinds["shares"] and kinds["building_amis"]
    reaped = run(local_stack.root, tmp, "reap")
    assert reaped.returncode == 0, reaped.stderr

    left = state(local_stack, tmp, source).new_since(before)
    assert left.pop("locks") == ["demo/prod/app"]
    assert not any(left.values()), left
    assert shares(env_aws(local_stack, "staging"), source) == []
    code, stderr, done = promote(local_stack.root, tmp, "--break-lock")
    assert code == 0, stderr[-3000:]
    assert (done["reused"], done["release"]["outcome"]) == (False, "verified")
    record("promote: kill -9 while copying, reap", "SIGKILL", left, "verified (--break-lock)")


def test_a_re_run_keeps_the_verified_copy_and_removes_an_incomplete_twin(
        local_stack: Project, tmp: Path) -> None:
    source = verified_in_staging(local_stack)
    code, stderr, done = promote(local_stack.root, tmp)
    assert code == 0, stderr[-3000:]
    prod = env_aws(local_stack, "prod")
    ec2 = prod.client("ec2")
    # What a second promotion killed after its copy_image left (before the lock, twins).
    twin = ec2.copy_image(SourceImageId=done["ami_id"], SourceRegion=prod.region,
                          Name="twin-of-a-killed-run")["ImageId"]
    verified = amis.describe(ec2, image_ids=[done["ami_id"]])[0]
    amis.set_tags(ec2, amis.describe(ec2, image_ids=[twin])[0], {
        **{k: v for k, v in verified.tags.items() if not k.startswith("builder:verified")},
        amis.TAG_STATUS: amis.AmiStatus.BUILDING, amis.TAG_OWNER: f"elsewhere/{KILLED_PID}",
        "builder:started-at": datetime.now(UTC).isoformat(timespec="seconds")})
    before = state(local_stack, tmp, source)

    code, stderr, again = promote(local_stack.root, tmp)

    assert code == 0, stderr[-3000:]
    assert f"removing {twin}, an incomplete copy" in stderr
    assert (again["ami_id"], again["reused"]) == (done["ami_id"], True)
    assert again["release"]["outcome"] == "unchanged"
    assert fleet.default_image(ec2, "demo-prod-app") == done["ami_id"]
    left = state(local_stack, tmp, source).new_since(before)
    assert not any(left.values()), left
    assert [c.id for c in copies_of(local_stack, source)] == [done["ami_id"]]
    record("promote: re-run next to an incomplete twin", "twin copy", left, "unchanged")


def test_two_promotions_at_once(local_stack: Project, tmp: Path) -> None:
    source = verified_in_staging(local_stack)
    before = state(local_stack, tmp, source)
    # The first stops itself (SIGSTOP) once its instance refresh (prod app's
    # deploy_strategy) is created, lock held.
    first = start(local_stack.root, tmp, "promote", "demo", "app", "--to", "prod", "--json",
                  signal_at="SIGSTOP@^created instance refresh")
    read_until(first, r"created instance refresh")

    code, stderr, _ = promote(local_stack.root, tmp)
    assert code == 1, stderr[-3000:]
    assert "demo/prod/app: locked by " in stderr and "--break-lock" in stderr

    os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    code, stderr, again = promote(local_stack.root, tmp)
    assert code == 0, stderr[-3000:]
    assert (again["ami_id"], again["reused"]) == (json.loads(out)["ami_id"], True)
    left = state(local_stack, tmp, source).new_since(before)
    assert not any(left.values()), left
    assert len(copies_of(local_stack, source)) == 1
    record("promote: two at once", "concurrency", left, "unchanged")


def test_prune_and_release_leave_incomplete_amis_alone(local_stack: Project,
                                                       tmp: Path) -> None:
    prod = env_aws(local_stack, "prod")
    verified_in_staging(local_stack)
    code, stderr, done = promote(local_stack.root, tmp, "--no-deploy")
    assert code == 0, stderr[-3000:]
    ec2 = prod.client("ec2")
    amis.set_tags(ec2, amis.describe(ec2, image_ids=[done["ami_id"]])[0],
                  {amis.TAG_STATUS: amis.AmiStatus.BUILDING})  # as its promotion runs

    refused = run(local_stack.root, tmp, "release", "demo", "prod", "app", "--ami",
                  str(done["ami_id"]))
    assert refused.returncode == 2
    assert "is incomplete (builder:status=building)" in last_line(refused)
    plan = run(local_stack.root, tmp, "prune", "demo", "prod", "app", "--keep", "1", "--json")
    assert plan.returncode == 0, plan.stderr
    entry = next(e for e in json.loads(plan.stdout)["amis"] if e["ami_id"] == done["ami_id"])
    assert entry["action"] == "keep" and "incomplete" in " ".join(entry["reasons"])

    with lock.held(prod, PROD_APP, minutes=5):
        locked = run(local_stack.root, tmp, "prune", "demo", "prod", "app", "--yes")
    assert locked.returncode == 1
    assert "demo/prod/app: locked by " in last_line(locked)
    pruned = run(local_stack.root, tmp, "prune", "demo", "prod", "app", "--keep", "1",
                 "--yes", "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert done["ami_id"] in {e["ami_id"] for e in json.loads(pruned.stdout)["amis"]
                              if e["action"] == "keep"}
    amis.set_tags(ec2, amis.describe(ec2, image_ids=[done["ami_id"]])[0],
                  {amis.TAG_STATUS: amis.AmiStatus.BAKED})  # its promotion "ended"
    record("prune/release next to an incomplete AMI", "lock held, building AMI",
           {"locks": []}, "kept, refused")


def test_reap_by_age_packer_temporary_and_other_hosts_amis(local_stack: Project,
                                                           tmp: Path) -> None:
    """What no process of this host owns goes by age: an incomplete AMI of a run on
    another machine that started 5 hours ago (past the 4h default), and Packer's
    temporary AMI (untagged, a random 7-character name) once older than --older-than."""
    dev = env_aws(local_stack, "dev")
    ec2 = dev.client("ec2")
    base = amis.resolve_source(ec2, local_stack.resolve("demo", "dev", "app").settings)
    instance = ec2.run_instances(ImageId=base.id, MinCount=1, MaxCount=1)["Instances"][0]
    temporary = ec2.create_image(InstanceId=instance["InstanceId"], Name="Xy7Kq2P")["ImageId"]
    stale = ec2.create_image(InstanceId=instance["InstanceId"], Name="demo-dev-app-stale")
    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    amis.set_tags(ec2, amis.describe(ec2, image_ids=[stale["ImageId"]])[0], {
        amis.TAG_APP: "demo", amis.TAG_ENV: "dev", amis.TAG_COMP: "app",
        amis.TAG_STATUS: amis.AmiStatus.BUILDING, amis.TAG_RUN_ID: "0123456789ab",
        amis.TAG_OWNER: f"ci-runner-7/{KILLED_PID}",
        "builder:started-at": "2020-01-01T00:00:00+00:00"})

    default = run(local_stack.root, tmp, "reap", "--dry-run", "--json")
    assert default.returncode == 0, default.stderr
    kinds = json.loads(default.stdout)["by_kind"]
    assert f"111111111111/eu-west-1/{stale['ImageId']}" in kinds["building_amis"]
    assert kinds["packer_temporary_amis"] == []  # younger than 4h: maybe a live bake's

    reaped = run(local_stack.root, tmp, "reap", "--older-than", "0s", "--json")
    assert reaped.returncode == 0, reaped.stderr
    kinds = json.loads(reaped.stdout)["by_kind"]
    assert [i.rsplit("/", 1)[1] for i in kinds["packer_temporary_amis"]] == [temporary]
    assert amis.images_by_id(ec2, [temporary, stale["ImageId"]]) == {}
    record("reap: other host's AMI, Packer temporary AMI", "age", {}, "removed")
