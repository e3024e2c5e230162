"""Records in the records bucket and the changes summary, against the emulator with AMIs
as a bake leaves them (without Packer): `local up` makes the bucket, `diff` reads a
record from it when the build folder isn't on this machine, `release` says what the AMI
changes against the one that ran, and `rebuild --dry-run` names the base images."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from builder import records
from builder.aws import images
from builder.bake.packages import Package, write_manifest
from builder.config.models import Combo
from builder.project import Project
from builder.release.release import release
from tests.conftest import require_root
from tests.pipelines.conftest import bake_like

pytestmark = pytest.mark.local


def _folder(project: Project, combo: Combo, image: images.Image) -> Any:
    return (project.layout.state_dir / "builds" / combo.app / combo.env / combo.comp /
            image.tags[images.TAG_BUILD_ID])


def _baked(project: Project, combo: Combo, found: list[Package], *,
           days_ago: float = 0) -> images.Image:
    when = datetime.now(UTC) - timedelta(days=days_ago)
    image = bake_like(project, combo, built_at=when, created=when)
    write_manifest(_folder(project, combo, image), found)
    return image


def test_local_up_makes_the_records_bucket(local_stack: Project) -> None:
    resolved = local_stack.resolve("demo", "dev", "app")
    bucket = resolved.settings.records_bucket
    assert bucket == f"builder-records-{resolved.settings.aws_account_id}"
    local_stack.env_aws(resolved).client("s3").head_bucket(Bucket=bucket)


def test_diff_reads_the_bucket_when_the_build_folder_is_gone(local_stack: Project,
                                                             cli: Any) -> None:
    combo = Combo("demo", "dev", "app")
    resolved = local_stack.resolve(combo.app, combo.env, combo.comp)
    env_aws = local_stack.env_aws(resolved)
    bucket = resolved.settings.records_bucket
    assert bucket
    old = _baked(local_stack, combo, [Package("jq", "amd64", "1.6-2.1", "jq")], days_ago=1)
    new = _baked(local_stack, combo, [Package("jq", "amd64", "1.7-1", "jq")])
    for image in (old, new):
        where, written = records.upload_build(env_aws, bucket, combo, image.id,
                                              _folder(local_stack, combo, image))
        assert len(written) == 2  # fingerprint.json and packages.json (no result.json here)
        images.set_tags(env_aws.client("ec2"), image, {images.TAG_RECORD: where})
    here = cli("--local", "--json", "diff", old.id, new.id, root=local_stack.root)
    assert here.exit_code == 0, here.output

    for image in (old, new):
        shutil.rmtree(_folder(local_stack, combo, image))
    there = cli("--local", "--json", "diff", old.id, new.id, root=local_stack.root)

    assert there.exit_code == 0, there.output
    assert json.loads(there.stdout) == json.loads(here.stdout)
    assert json.loads(there.stdout)["packages"] == [
        {"name": "jq", "arch": "amd64", "change": "upgraded", "before": "1.6-2.1",
         "after": "1.7-1"}]


def test_release_says_what_changes_against_what_ran(local_stack: Project) -> None:
    combo = Combo("demo", "dev", "worker")
    running = _baked(local_stack, combo, [Package("curl", "amd64", "8.5.0-2", "curl"),
                                          Package("gone", "all", "1", "gone")], days_ago=1)
    release(local_stack, combo, ami_id=running.id)
    new = _baked(local_stack, combo, [Package("curl", "amd64", "8.5.0-2ubuntu10.6", "curl"),
                                      Package("tree", "amd64", "2.1.1-2", "tree")])

    done = release(local_stack, combo, ami_id=new.id)

    assert done.changes is not None
    assert (done.changes.running, done.changes.new) == (running.id, new.id)
    assert done.changes.counts == {"added": 1, "removed": 1, "upgraded": 1, "downgraded": 0}
    assert [(c.name, c.before, c.after) for c in done.changes.upgraded] == [
        ("curl", "8.5.0-2", "8.5.0-2ubuntu10.6")]
    assert done.changes.base_before is None  # both from the same base image
    assert "changes vs what runs" in done.to_text()
    assert "curl 8.5.0-2 -> 8.5.0-2ubuntu10.6" in done.to_text()
    assert done.to_json()["changes"]["counts"]["upgraded"] == 1
    saved = json.loads(done.record.read_text()) if done.record else {}
    assert saved["changes"]["upgraded"][0]["name"] == "curl"
    s3 = local_stack.env_aws(local_stack.resolve("demo", "dev", "worker")).client("s3")
    listed = s3.list_objects_v2(Bucket=str(local_stack.resolve(
        "demo", "dev", "worker").settings.records_bucket),
        Prefix=f"builder/demo/dev/worker/{new.id}/releases/")
    assert [o["Key"].rsplit("/", 1)[1] for o in listed.get("Contents", [])] == [
        done.record.name if done.record else ""]


def test_a_bad_package_is_refused_before_anything_is_published(local_stack: Project,
                                                               cli: Any) -> None:
    ec2 = local_stack.env_aws(local_stack.resolve("demo", "dev", "app")).client("ec2")
    before = ec2.describe_images(Owners=["099720109477"])["Images"]

    done = cli("--local", "local", "publish-source-ami", "demo", "dev", "--with-package",
               "Bad_Name=1.0", root=local_stack.root)

    assert done.exit_code == 2
    assert "--with-package Bad_Name=1.0: expected NAME=VERSION" in done.output
    assert len(ec2.describe_images(Owners=["099720109477"])["Images"]) == len(before)


def test_a_promoted_copy_points_at_its_originals_record(local_stack: Project) -> None:
    from builder.pipelines.promote import promote

    staging = Combo("demo", "staging", "app")
    resolved = local_stack.resolve(staging.app, staging.env, staging.comp)
    staging_aws = local_stack.env_aws(resolved)
    source = _baked(local_stack, staging, [Package("jq", "amd64", "1.7-1", "jq")])
    bucket = resolved.settings.records_bucket
    assert bucket
    where, _ = records.upload_build(staging_aws, bucket, staging, source.id,
                                    _folder(local_stack, staging, source))
    images.set_tags(staging_aws.client("ec2"), source, {images.TAG_RECORD: where})
    assert release(local_stack, staging, ami_id=source.id).outcome == "verified"

    promoted = promote(local_stack, "demo", "app", "prod", deploy=False)

    prod_aws = local_stack.env_aws(local_stack.resolve("demo", "prod", "app"))
    copy = images.images_by_id(prod_aws.client("ec2"), [promoted.ami_id])[promoted.ami_id]
    assert copy.tags[images.TAG_RECORD] == where
    shutil.rmtree(_folder(local_stack, staging, source))
    record = records.find(local_stack, prod_aws, copy)
    assert record is not None and record.where == where  # read with staging's role
    assert record.packages == (Package("jq", "amd64", "1.7-1", "jq"),)


def test_a_package_the_build_host_has_is_refused(local_stack: Project, cli: Any) -> None:
    require_root()  # reads the build host's root (made once per machine)
    done = cli("--local", "local", "publish-source-ami", "demo", "dev", "--with-package",
               "sudo=99.0", root=local_stack.root)

    assert done.exit_code == 2
    assert "the build host's root has a package sudo" in done.output
