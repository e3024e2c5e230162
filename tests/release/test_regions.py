"""Multi-region envs against the local stack: prod made to span three regions (one key
per region). A bake's copies in the other regions, a release in every region at once
(each with its lock), one region's failure rolled back while the others stay, --region,
a promotion into the env, and `local up` making each region's fleet."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from builder.aws import images
from builder.bake.regions import copy_to_regions
from builder.config.models import Combo, KmsKeys
from builder.errors import BakeFailed, RefusedError
from builder.interrupts import Cancel
from builder.local import stack
from builder.local.mode import LOCAL
from builder.local.stack import fail_next_deployment
from builder.project import Project
from builder.release.regions import RegionsResult, release
from builder.release.release import release as single_release
from tests.conftest import copy_demo
from tests.pipelines.conftest import bake_like
from tests.release.emulated import (
    KEYS,
    REGIONS,
    Lines,
    baked_everywhere,
    default_image,
    ec2_in,
    make_ami,
    make_multi_region,
)

pytestmark = pytest.mark.local

PROD_APP = Combo("demo", "prod", "app")  # instance_refresh
PROD_WORKER = Combo("demo", "prod", "worker")  # blue_green_copy: fail_next_deployment
@pytest.fixture(scope="module")
def regions_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = copy_demo(tmp_path_factory.mktemp("regions") / "infra")
    make_multi_region(root)
    project = Project.open(str(root), local_mode=LOCAL)
    stack.up(project, build_host=False, deploy_step_seconds=0.2)
    try:
        yield project
    finally:
        stack.down(project.layout)


def test_local_up_makes_the_fleet_in_every_region(regions_stack: Project) -> None:
    for region in REGIONS:
        assert default_image(regions_stack, PROD_APP, region).startswith("ami-")


def test_bake_copies_are_tagged_and_encrypted_with_each_regions_key(
        regions_stack: Project) -> None:
    project = regions_stack
    amis = baked_everywhere(project)

    source = images.describe(ec2_in(project, PROD_APP, REGIONS[0]), image_ids=[amis[REGIONS[0]]])[0]
    assert set(amis) == set(REGIONS) and len(set(amis.values())) == 3
    for region in REGIONS[1:]:
        copy = images.describe(ec2_in(project, PROD_APP, region), image_ids=[amis[region]])[0]
        assert copy.state == "available" and copy.name == source.name
        for tag in (images.TAG_FINGERPRINT, images.TAG_BUILD_ID, images.TAG_SOURCE_AMI,
                    images.TAG_APP, images.TAG_ENV, images.TAG_COMP):
            assert copy.tags[tag] == source.tags[tag], tag
        assert copy.tags[images.TAG_STATUS] == images.AmiStatus.BAKED
        assert copy.tags[images.TAG_COPIED_FROM] == f"{REGIONS[0]}/{source.id}"
        assert copy.encrypted and all(f":{region}:" in key for key in copy.kms_key_ids)

    # A second copy step finds the complete copies: nothing copied again.
    resolved = project.resolve("demo", "prod", "app")
    again = copy_to_regions(project, resolved, source, progress=Lines(), cancel=Cancel())
    assert {(c.region, c.ami_id, c.made) for c in again} == {
        (region, amis[region], False) for region in REGIONS[1:]}


def test_release_in_every_region_at_once(regions_stack: Project) -> None:
    project = regions_stack
    amis = baked_everywhere(project)

    result = release(project, PROD_APP, ami_id=amis[REGIONS[0]], progress=Lines())

    assert isinstance(result, RegionsResult) and result.exit_code == 0
    assert [part.region for part in result.regions] == list(REGIONS)
    for part in result.regions:
        assert part.result is not None and part.result.outcome == "verified"
        assert part.result.region == part.region and part.ami_id == amis[part.region]
        assert default_image(project, PROD_APP, part.region) == amis[part.region]
    record = json.loads(Path(str(result.record)).read_text())
    assert [(r["region"], r["outcome"]) for r in record["regions"]] == [
        (region, "verified") for region in REGIONS]


def test_a_failed_region_rolls_back_and_the_others_stay(regions_stack: Project,
                                                        cli: Callable[..., Any]) -> None:
    project = regions_stack
    before = default_image(project, PROD_WORKER, "us-east-1")
    amis = baked_everywhere(project, PROD_WORKER)
    fail_next_deployment(project, "demo", "prod", "worker", "us-east-1")

    done = cli("--local", "--json", "release", "demo", "prod", "worker", "--ami",
               amis[REGIONS[0]], root=project.root)

    assert done.exit_code == 1, done.output
    document = json.loads(done.stdout)
    outcomes = {r["region"]: r["outcome"] for r in document["regions"]}
    assert outcomes == {"eu-central-1": "verified", "us-east-1": "failed",
                        "us-west-2": "verified"}
    assert document["failed"] == ["us-east-1"]
    failed = next(r for r in document["regions"] if r["region"] == "us-east-1")
    assert "HEALTH_CONSTRAINTS" in failed["error"] and "Rolled back" in failed["error"]
    assert default_image(project, PROD_WORKER, "us-east-1") == before  # rolled back
    east = images.describe(ec2_in(project, PROD_WORKER, "us-east-1"), image_ids=[amis["us-east-1"]])
    assert east[0].tags[images.TAG_STATUS] == images.AmiStatus.FAILED
    for region in ("eu-central-1", "us-west-2"):  # they stay
        assert default_image(project, PROD_WORKER, region) == amis[region]
    record = json.loads(Path(document["record"]).read_text())
    assert {r["region"]: r["outcome"] for r in record["regions"]} == outcomes

    text = cli("--local", "release", "demo", "prod", "worker", "--ami", amis[REGIONS[0]],
               root=project.root)  # the failed region again; the others are unchanged
    assert text.exit_code == 0, text.output
    assert "[us-east-1] demo/prod/worker: released" in text.stdout


def test_region_option_releases_one_region(regions_stack: Project,
                                           cli: Callable[..., Any]) -> None:
    project = regions_stack
    before = {region: default_image(project, PROD_APP, region) for region in REGIONS}
    amis = baked_everywhere(project)

    done = cli("--local", "--json", "release", "demo", "prod", "app", "--region", "us-west-2",
               "--ami", amis["us-west-2"], root=project.root)

    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["region"] == "us-west-2"
    assert default_image(project, PROD_APP, "us-west-2") == amis["us-west-2"]
    for region in REGIONS[:2]:
        assert default_image(project, PROD_APP, region) == before[region]
    wrong = cli("--local", "release", "demo", "prod", "app", "--region", "ap-south-1",
                root=project.root)
    assert wrong.exit_code == 2 and "ap-south-1: not a region of this env" in wrong.stderr


def test_a_region_without_a_copy_is_refused_before_anything_changes(
        regions_stack: Project) -> None:
    project = regions_stack
    before = {region: default_image(project, PROD_APP, region) for region in REGIONS}
    lonely = make_ami(project, PROD_APP, tags={images.TAG_FINGERPRINT: uuid.uuid4().hex})

    with pytest.raises(RefusedError, match=f"{lonely} has no complete copy in us-east-1"):
        release(project, PROD_APP, ami_id=lonely)

    assert {region: default_image(project, PROD_APP, region) for region in REGIONS} == before


def test_a_failed_copy_fails_the_step_and_leaves_no_copy(regions_stack: Project) -> None:
    project = regions_stack
    resolved = project.resolve("demo", "prod", "app")
    # us-west-2's key doesn't exist there: EC2 accepts the copy, then fails it.
    keys = KmsKeys(by_region=(*((r, KEYS[r]) for r in REGIONS[:2]),
                              ("us-west-2", "alias/demo-prod-missing")))
    broken = replace(resolved, settings=replace(resolved.settings, kms_key_id=keys))
    ami = make_ami(project, PROD_APP, status=images.AmiStatus.BUILDING,
                   tags={images.TAG_FINGERPRINT: uuid.uuid4().hex})
    image = images.describe(ec2_in(project, PROD_APP, REGIONS[0]), image_ids=[ami])[0]

    with pytest.raises(BakeFailed, match=r"us-west-2: the copy ami-\w+ of .* ended failed"):
        copy_to_regions(project, broken, image, progress=Lines(), cancel=Cancel())

    for region in REGIONS[1:]:
        ec2 = ec2_in(project, PROD_APP, region)
        left = images.describe(ec2, owners=["self"], filters={
            f"tag:{images.TAG_COPIED_FROM}": [f"{REGIONS[0]}/{ami}"],
            "state": ["pending", "available", "failed"]})
        assert left == [], region
        snapshots = ec2.describe_snapshots(OwnerIds=["self"], Filters=[
            {"Name": f"tag:{images.TAG_COPIED_FROM}", "Values": [f"{REGIONS[0]}/{ami}"]}])
        assert snapshots["Snapshots"] == [], region


def test_promote_into_a_multi_region_env(regions_stack: Project,
                                         cli: Callable[..., Any]) -> None:
    project = regions_stack
    staging = Combo("demo", "staging", "app")
    source = bake_like(project, staging)
    assert single_release(project, staging, ami_id=source.id).outcome == "verified"

    done = cli("--local", "--json", "promote", "demo", "app", "--to", "prod",
               root=project.root)

    assert done.exit_code == 0, done.output
    promoted = json.loads(done.stdout)
    copies = {c["region"]: c["ami_id"] for c in promoted["copies"]}
    assert set(copies) == set(REGIONS[1:]) and promoted["region"] == REGIONS[0]
    amis = {REGIONS[0]: promoted["ami_id"], **copies}
    assert [(r["region"], r["outcome"]) for r in promoted["release"]["regions"]] == [
        (region, "verified") for region in REGIONS]
    for region, ami in amis.items():
        assert default_image(project, PROD_APP, region) == ami
        copy = images.describe(ec2_in(project, PROD_APP, region), image_ids=[ami])[0]
        assert copy.fingerprint == source.fingerprint
        assert copy.tags[images.TAG_PROMOTED_FROM] == f"staging/{source.id}"


def test_status_shows_each_region(regions_stack: Project, cli: Callable[..., Any]) -> None:
    project = regions_stack
    done = cli("--local", "--json", "status", "demo", "--env", "prod", root=project.root)

    assert done.exit_code == 0, done.output
    rows = [r for r in json.loads(done.stdout)["combos"] if r["comp"] == "app"]
    assert [r["region"] for r in rows] == sorted(REGIONS)
    for row in rows:
        assert row["ami_id"] == default_image(project, PROD_APP, row["region"])
        assert row["error"] is None
    # What is due is the bake region's, in every region.
    assert len({(r["due"], tuple(r["reasons"])) for r in rows}) == 1
    text = cli("--local", "status", "demo", "--env", "prod", root=project.root)
    assert all(f"demo/prod/app {region}" in text.stdout for region in REGIONS)


def test_prune_prunes_each_region_and_keeps_the_sources_of_kept_copies(
        regions_stack: Project, cli: Callable[..., Any]) -> None:
    project = regions_stack
    west = baked_everywhere(project)  # released only in us-west-2
    assert release(project, PROD_APP, region="us-west-2",
                   ami_id=west["us-west-2"]).exit_code == 0
    newest = baked_everywhere(project)

    plan = cli("--local", "--json", "prune", "demo", "prod", "app", "--keep", "1",
               root=project.root)

    assert plan.exit_code == 0, plan.output
    reports = {r["region"]: r for r in json.loads(plan.stdout)["regions"]}
    assert set(reports) == set(REGIONS)
    actions = {region: {a["ami_id"]: a for a in r["amis"]} for region, r in reports.items()}
    for region in REGIONS:
        assert actions[region][newest[region]]["action"] == "keep"
    kept_source = actions[REGIONS[0]][west[REGIONS[0]]]
    assert kept_source["action"] == "keep"
    assert f"its copy {west['us-west-2']} stays in us-west-2" in kept_source["reasons"]
    doomed = {region: [i for i, a in by_id.items() if a["action"] == "delete"]
              for region, by_id in actions.items()}
    assert all(doomed.values()), doomed  # each region has old AMIs to go

    done = cli("--local", "--json", "prune", "demo", "prod", "app", "--keep", "1", "--yes",
               root=project.root)

    assert done.exit_code == 0, done.output
    for region, gone in doomed.items():
        ec2 = ec2_in(project, PROD_APP, region)
        assert images.images_by_id(ec2, gone) == {}, region
    assert images.images_by_id(ec2_in(project, PROD_APP, REGIONS[0]), [west[REGIONS[0]]])


def test_reap_removes_a_killed_bakes_copy_in_another_region(
        regions_stack: Project, cli: Callable[..., Any]) -> None:
    project = regions_stack
    ami = make_ami(project, PROD_APP)
    west = ec2_in(project, PROD_APP, "us-west-2")
    # What a bake killed while copying leaves: a `building` copy of its run and host.
    copy = west.copy_image(SourceImageId=ami, SourceRegion=REGIONS[0],
                           Name=f"copy-of-{ami}")["ImageId"]
    images.set_tags(west, images.describe(west, image_ids=[copy])[0], {
        images.TAG_APP: "demo", images.TAG_ENV: "prod", images.TAG_COMP: "app",
        images.TAG_STATUS: images.AmiStatus.BUILDING, images.TAG_RUN_ID: uuid.uuid4().hex[:12],
        images.TAG_OWNER: f"{socket.gethostname()}/{2**22 + 1}"})  # above pid_max: gone

    done = cli("--local", "--json", "reap", root=project.root)

    assert done.exit_code == 0, done.output
    assert f"333333333333/us-west-2/{copy}" in json.loads(done.stdout)["by_kind"][
        "building_amis"]
    assert images.images_by_id(west, [copy]) == {}


def test_promote_with_region_releases_that_region_only(regions_stack: Project,
                                                       cli: Callable[..., Any]) -> None:
    project = regions_stack
    staging = Combo("demo", "staging", "worker")
    source = bake_like(project, staging, tags={images.TAG_FINGERPRINT: uuid.uuid4().hex})
    assert single_release(project, staging, ami_id=source.id).outcome == "verified"
    before = {region: default_image(project, PROD_WORKER, region) for region in REGIONS}
    armed = cli("--local", "local", "fail-next-deployment", "demo", "prod", "worker",
                "--region", "us-west-2", root=project.root)
    assert armed.exit_code == 0, armed.output

    done = cli("--local", "--json", "promote", "demo", "worker", "--to", "prod", "--region",
               "us-west-2", root=project.root)

    assert done.exit_code == 1, done.output  # the armed failure, in us-west-2 only
    assert "HEALTH_CONSTRAINTS" in done.stderr
    assert {region: default_image(project, PROD_WORKER, region) for region in REGIONS} == before
    again = cli("--local", "--json", "promote", "demo", "worker", "--to", "prod", "--region",
                "us-west-2", root=project.root)
    assert again.exit_code == 0, again.output
    promoted = json.loads(again.stdout)
    assert promoted["reused"] and promoted["release"]["region"] == "us-west-2"
    west = {c["region"]: c["ami_id"] for c in promoted["copies"]}["us-west-2"]
    assert promoted["release"]["ami_id"] == west
    assert default_image(project, PROD_WORKER, "us-west-2") == west
    assert {r: default_image(project, PROD_WORKER, r) for r in REGIONS[:2]} == {
        r: before[r] for r in REGIONS[:2]}
