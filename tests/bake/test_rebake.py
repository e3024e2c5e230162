"""`promote_by: rebake` end to end: staging's verified AMI (aws, eu-west-1) brought to
prod-cn (aws-cn, cn-north-1) by a real local bake there from the same inputs, tagged with
its lineage and released."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.aws import fleet
from builder.aws import images as amis
from builder.aws.calls import RUNNING
from builder.config.models import Combo
from builder.project import Project
from builder.release.release import release
from tests.conftest import commit_all, partition_repo, require_root, run_builder, stack_for_bakes
from tests.pipelines.conftest import bake_like

pytestmark = [pytest.mark.slow, pytest.mark.local]

STAGING_APP = Combo("demo", "staging", "app")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    require_root()
    root = partition_repo(tmp_path_factory.mktemp("rebake") / "infra")
    commit_all(root)
    with stack_for_bakes(root) as started:
        yield started


def test_promote_by_rebake_bakes_in_china_from_staging_inputs_and_releases(
        project: Project) -> None:
    # Staging's AMI as a bake of this checkout leaves it (its fingerprint), verified there.
    source = bake_like(project, STAGING_APP)
    assert release(project, STAGING_APP, ami_id=source.id).outcome == "verified"

    started = time.monotonic()
    done = run_builder("--local", "promote", "demo", "app", "--to", "prod-cn", "--json",
                       root=Path(project.root))
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    promoted = json.loads(done.stdout)
    print(f"rebake promote into cn-north-1: {took:.1f}s")
    assert (promoted["promote_by"], promoted["region"], promoted["account"]) == (
        "rebake", "cn-north-1", "444444444444")
    assert (promoted["reused"], promoted["shared"]) == (False, False)
    assert promoted["release"]["outcome"] == "verified"

    with RUNNING.aside():
        cn = project.env_aws(project.resolve("demo", "prod-cn", "app"))
        ec2 = cn.client("ec2")
        [baked] = amis.describe(ec2, image_ids=[promoted["ami_id"]])
        base = amis.resolve_source(ec2, project.resolve("demo", "prod-cn", "app").settings)
        assert baked.owner == "444444444444" and baked.status == amis.AmiStatus.VERIFIED
        assert baked.tags[amis.TAG_PROMOTED_FROM] == f"staging/{source.id}"
        assert baked.tags[amis.TAG_SOURCE_FINGERPRINT] == source.fingerprint
        # Its own fingerprint is prod-cn's (another region, account, key, base image).
        assert baked.fingerprint and baked.fingerprint != source.fingerprint
        assert baked.source_ami == base.id != source.source_ami
        assert fleet.default_image(ec2, "demo-prod-cn-app") == baked.id
        # The base image is China's own, and the output says so with both ids.
        assert f"base image {base.id}" in done.stderr and source.source_ami in done.stderr
        # Nothing of staging's was shared.
        staging = project.env_aws(project.resolve("demo", "staging", "app")).client("ec2")
        assert staging.describe_image_attribute(
            ImageId=source.id, Attribute="launchPermission")["LaunchPermissions"] == []

    # status and rebuild know it for the rebake of staging's AMI: nothing due.
    shown = run_builder("--local", "--json", "status", "demo", "--env", "prod-cn",
                        root=Path(project.root))
    assert shown.returncode == 0, shown.stderr
    app = next(row for row in json.loads(shown.stdout)["combos"]
               if (row["env"], row["comp"]) == ("prod-cn", "app"))
    assert (app["rebuild_due"], app["reasons"]) == (
        False, [f"runs {baked.id}, the rebake of staging's verified {source.id}"])

    again = run_builder("--local", "promote", "demo", "app", "--to", "prod-cn", "--json",
                        root=Path(project.root))
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert (second["ami_id"], second["reused"]) == (baked.id, True)
    assert second["release"]["outcome"] == "unchanged"
