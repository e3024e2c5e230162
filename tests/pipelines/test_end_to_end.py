"""The pipelines end to end, with real bakes (Packer, Ansible, the local build host):
a staging bake promoted to prod; after OS updates, `rebuild --release` bakes only the
comp still built on the old base image, and releases it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.aws import fleet, images
from builder.config.models import Combo
from builder.local.mode import LOCAL
from builder.project import Project
from tests.conftest import run_builder
from tests.pipelines.conftest import bake_like, ec2_of

pytestmark = [pytest.mark.slow, pytest.mark.local]

APP, WORKER = Combo("demo", "dev", "app"), Combo("demo", "dev", "worker")
PROD = "333333333333"


@pytest.fixture(scope="module")
def project(bake_root: Path) -> Project:
    return Project.open(str(bake_root), local_mode=LOCAL)


def rebuild(root: Path, *args: str) -> dict[str, dict[str, object]]:
    done = run_builder("--local", "rebuild", "demo", "--env", "dev", *args, "--json",
                       root=root, timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    return {f"{e['app']}/{e['env']}/{e['comp']}": e for e in json.loads(done.stdout)}


def test_rebuild_release_bakes_only_what_the_new_base_image_affects(project: Project) -> None:
    old_app = bake_like(project, APP)
    published = run_builder("--local", "local", "publish-source-ami", "demo", "dev", "--json",
                            root=project.root)
    assert published.returncode == 0, published.stderr
    new_base = json.loads(published.stdout)["images"][0]["image_id"]
    # worker was rebuilt on the new base already; app still runs on the old one.
    worker = bake_like(project, WORKER)
    assert (old_app.source_ami != new_base, worker.source_ami) == (True, new_base)

    planned = rebuild(project.root, "--release", "--dry-run")
    assert planned["demo/dev/app"]["action"] == "bake"
    assert planned["demo/dev/app"]["reason"].startswith(f"newer base image {new_base}")
    assert planned["demo/dev/worker"]["action"] == "skip"

    ran = rebuild(project.root, "--release")
    assert ran["demo/dev/worker"]["result"] == "skipped"
    entry = ran["demo/dev/app"]
    assert (entry["result"], entry["detail"]) == ("done", "baked, release verified")
    ec2 = ec2_of(project, APP)
    baked = images.describe(ec2, image_ids=[str(entry["ami_id"])])[0]
    assert (baked.source_ami, baked.status) == (new_base, images.AmiStatus.VERIFIED)
    assert baked.id != old_app.id
    assert fleet.default_image(ec2, "demo-dev-app") == baked.id

    settled = rebuild(project.root, "--dry-run")
    assert {e["action"] for e in settled.values()} == {"skip"}


def test_a_staging_bake_is_promoted_to_prod_and_verified_there(project: Project) -> None:
    baked = run_builder("--local", "bake", "demo", "staging", "app", "--release", "--json",
                        root=project.root, timeout=1800)
    assert baked.returncode == 0, baked.stderr[-4000:]
    source = json.loads(baked.stdout)[0]["bake"]["ami_id"]

    done = run_builder("--local", "promote", "demo", "app", "--to", "prod", "--json",
                       root=project.root, timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    promoted = json.loads(done.stdout)
    assert (promoted["source_ami"], promoted["account"]) == (source, PROD)
    assert promoted["release"]["outcome"] == "verified"
    prod = Combo("demo", "prod", "app")
    ec2 = ec2_of(project, prod)
    copy = images.describe(ec2, image_ids=[promoted["ami_id"]])[0]
    assert copy.tags[images.TAG_PROMOTED_FROM] == f"staging/{source}"
    assert copy.status == images.AmiStatus.VERIFIED and copy.encrypted
    key = project.env_aws(project.resolve("demo", "prod", "app")).client("kms").describe_key(
        KeyId="alias/demo-prod-ami")["KeyMetadata"]["Arn"]
    snapshot = ec2.describe_snapshots(SnapshotIds=list(copy.snapshot_ids))["Snapshots"][0]
    assert snapshot["KmsKeyId"] == key
    assert fleet.default_image(ec2, "demo-prod-app") == copy.id
