"""Records and changes end to end, with two real bakes: a base image given a package by
`local publish-source-ami --with-package`, a bake from it, a newer base image with a
higher version, `rebuild` naming the upgrade and both base images, `release` too,
`builder diff` of the two AMIs, and the records in the emulator's S3 that `diff` reads
once the local build folders are gone."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builder.aws import images
from builder.bake.packages import load_manifest
from builder.local.mode import LOCAL
from builder.pipelines.rebuild import rebuild
from builder.project import Project
from tests.conftest import commit_all, copy_demo, require_root, stack_for_bakes

pytestmark = [pytest.mark.slow, pytest.mark.local]

ARGS = ("demo", "dev", "worker")
PACKAGE = "builder-demo-tool"
BUCKET = "builder-records-111111111111"  # the demo's records_bucket for dev's account


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The demo with one comp in dev, so a rebuild bakes once."""
    require_root()
    repo = copy_demo(tmp_path_factory.mktemp("records") / "infra")
    common = repo / "vars" / "demo" / "dev" / "common.yml"
    common.write_text(common.read_text(encoding="utf-8").replace(
        "components: [app, worker]", "components: [worker]"), encoding="utf-8")
    commit_all(repo)
    with stack_for_bakes(repo):
        yield repo


def _json(done: Any) -> Any:
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def _publish(cli: Any, root: Path, version: str) -> str:
    published = _json(cli("--local", "--json", "local", "publish-source-ami", "demo", "dev",
                          "--with-package", f"{PACKAGE}={version}", root=root))
    [image] = published["images"]
    assert image["package"] == f"{PACKAGE}={version}"
    return str(image["image_id"])


def _version(found: list[Any]) -> str:
    return str(next(p.version for p in found if p.name == PACKAGE))


def _objects(project: Project) -> list[str]:
    s3 = project.env_aws(project.resolve(*ARGS)).client("s3")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="builder/demo/dev/worker/")
    return sorted(o["Key"] for o in listed.get("Contents", []))


@pytest.mark.timeout(900)  # two bakes
def test_a_package_upgrade_from_base_image_to_diff(root: Path, cli: Any) -> None:
    project = Project.open(str(root), local_mode=LOCAL)
    base_one = _publish(cli, root, "1.0")
    first = _json(cli("--local", "--json", "bake", *ARGS, root=root))
    ami_one = first["ami_id"]
    assert _version(load_manifest(Path(first["artifacts"]) / "packages.json")) == "1.0"
    ec2 = project.env_aws(project.resolve(*ARGS)).client("ec2")
    tags = images.images_by_id(ec2, [ami_one])[ami_one].tags
    record = f"s3://{BUCKET}/builder/demo/dev/worker/{ami_one}/"
    assert tags[images.TAG_RECORD] == record
    assert tags[images.TAG_SOURCE_AMI] == base_one
    _json(cli("--local", "--json", "release", *ARGS, "--ami", ami_one, root=root))

    base_two = _publish(cli, root, "1.1")
    plan = cli("--local", "rebuild", "demo", "--env", "dev", "--dry-run", root=root)
    assert plan.exit_code == 0, plan.output
    assert "changes vs what runs" in plan.stdout and "known after the bake" in plan.stdout
    assert f"base image: {base_one} (20" in plan.stdout and f"-> {base_two} (20" in plan.stdout

    report = rebuild(project, "demo", "dev")
    [outcome] = report.outcomes
    assert outcome.result == "done", outcome.detail
    ami_two = outcome.ami_id
    changes = outcome.shown_changes()
    assert changes is not None
    assert (changes.running, changes.new) == (ami_one, ami_two)
    assert changes.counts is not None and changes.counts["upgraded"] >= 1
    assert (PACKAGE, "1.0", "1.1") in [(c.name, c.before, c.after) for c in changes.upgraded]
    assert changes.base_before is not None and changes.base_after is not None
    assert (changes.base_before.id, changes.base_after.id) == (base_one, base_two)
    text = report.to_text()
    assert f"{PACKAGE} 1.0 -> 1.1" in text
    assert f"base image: {base_one} (" in text and f"-> {base_two} (" in text

    released = _json(cli("--local", "--json", "release", *ARGS, "--ami", ami_two, root=root))
    assert (PACKAGE, "1.0", "1.1") in [(c["name"], c["before"], c["after"])
                                       for c in released["changes"]["upgraded"]]

    def diffed() -> dict[str, Any]:
        result: dict[str, Any] = _json(cli("--local", "--json", "diff", ami_one, ami_two,
                                           root=root))
        return result

    here = diffed()
    assert {"name": PACKAGE, "arch": "all", "change": "upgraded", "before": "1.0",
            "after": "1.1"} in here["packages"]
    assert {"part": "source_ami", "name": "source_ami", "before": base_one,
            "after": base_two} in here["inputs"]

    kept = _objects(project)
    for ami in (ami_one, ami_two):
        prefix = f"builder/demo/dev/worker/{ami}/"
        assert {prefix + name for name in ("result.json", "fingerprint.json",
                                           "packages.json")} <= set(kept)
        assert any(key.startswith(prefix + "releases/") for key in kept)
    shutil.rmtree(root / ".builder" / "builds")
    assert diffed() == here  # read from the records bucket now
