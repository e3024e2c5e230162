"""Promotion into another partition on the local stack: staging (aws, eu-west-1) to
prod-gov (aws-us-gov, by a copy: refused before any write) and prod-cn (aws-cn,
cn-north-1, by a rebake: refused when its inputs are not staging's). The emulator, like
AWS, shares and copies nothing across partitions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from builder.aws import images as amis
from builder.aws.calls import RUNNING
from builder.config.models import Combo
from builder.local.mode import LOCAL
from builder.pipelines.rebake import check_same_inputs
from builder.project import Project
from builder.release.release import release
from tests.conftest import partition_repo
from tests.pipelines.conftest import bake_like

pytestmark = pytest.mark.local

STAGING_APP = Combo("demo", "staging", "app")
CN, GOV = "444444444444", "555555555555"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    from builder.local import stack as local_stack

    root = partition_repo(tmp_path_factory.mktemp("partitions") / "infra")
    project = Project.open(str(root), local_mode=LOCAL)
    local_stack.up(project, build_host=False, deploy_step_seconds=0.2)
    try:
        yield project
    finally:
        local_stack.down(project.layout)


def ec2(project: Project, env: str) -> Any:
    return project.env_aws(project.resolve("demo", env, "app")).client("ec2")


def verified_in_staging(project: Project) -> amis.Image:
    source = bake_like(project, STAGING_APP)
    assert release(project, STAGING_APP, ami_id=source.id).outcome == "verified"
    return amis.describe(ec2(project, "staging"), image_ids=[source.id])[0]


def builder_images(project: Project, env: str) -> list[amis.Image]:
    return amis.describe(ec2(project, env), owners=["self"],
                         filters={"tag:builder:app": ["demo"]})


def test_the_local_stack_serves_the_china_and_govcloud_envs(stack: Project) -> None:
    with RUNNING.aside():
        for env, region, partition in (("prod-cn", "cn-north-1", "aws-cn"),
                                       ("prod-gov", "us-gov-west-1", "aws-us-gov")):
            env_aws = stack.env_aws(stack.resolve("demo", env, "app"))
            assert env_aws.region == region
            key = env_aws.client("kms").describe_key(
                KeyId=f"alias/demo-{env}-ami")["KeyMetadata"]
            assert key["Arn"].startswith(f"arn:{partition}:kms:{region}:")
            assert amis.resolve_source(env_aws.client("ec2"),
                                       stack.resolve("demo", env, "app").settings)


def test_a_copy_into_another_partition_is_refused_before_any_write(
        stack: Project, cli: Any) -> None:
    source = verified_in_staging(stack)
    done = cli("--local", "promote", "demo", "app", "--to", "prod-gov", root=stack.root)
    assert done.exit_code == 2
    assert ("can't promote from staging (eu-west-1, partition aws) to prod-gov "
            "(us-gov-west-1, partition aws-us-gov) by a copy") in done.stderr
    assert "set `promote_by: rebake` in vars/demo/prod-gov/" in done.stderr
    with RUNNING.aside():
        assert builder_images(stack, "prod-gov") == []
        staging = ec2(stack, "staging")
        assert staging.describe_image_attribute(
            ImageId=source.id, Attribute="launchPermission")["LaunchPermissions"] == []
        after = amis.describe(staging, image_ids=[source.id])[0]
        assert after.tags == source.tags  # no share recorded, nothing retagged


def test_the_emulator_shares_and_copies_nothing_across_partitions(stack: Project) -> None:
    source = bake_like(stack, STAGING_APP)
    with RUNNING.aside():
        with pytest.raises(ClientError) as shared:
            ec2(stack, "staging").modify_image_attribute(
                ImageId=source.id, LaunchPermission={"Add": [{"UserId": CN}]})
        assert shared.value.response["Error"]["Code"] == "InvalidAMIAttributeItemValue"
        with pytest.raises(ClientError) as copied:
            ec2(stack, "prod-cn").copy_image(SourceImageId=source.id, Name="across",
                                             SourceRegion="eu-west-1")
        assert copied.value.response["Error"]["Code"] == "InvalidParameterValue"
        assert builder_images(stack, "prod-cn") == []


def test_a_rebake_from_other_inputs_is_refused_naming_them(stack: Project, cli: Any) -> None:
    source = verified_in_staging(stack)
    root = Path(stack.root)
    own = root / "vars/demo/prod-cn/app.yml"
    own.write_text("app_log_level: debug\nbase_packages: [curl]\n")
    try:
        done = cli("--local", "promote", "demo", "app", "--to", "prod-cn", root=root)
    finally:
        own.unlink()
    assert done.exit_code == 2
    assert (f"prod-cn can't rebake staging's {source.id}: its inputs differ from staging's "
            "in var app_log_level, var base_packages") in done.stderr

    # The checkout no longer holds what staging's AMI was baked from: said first.
    role = root / "playbooks/roles/base/tasks/main.yml"
    text = role.read_text()
    role.write_text(text + "\n# changed\n")
    try:
        done = cli("--local", "promote", "demo", "app", "--to", "prod-cn", root=root)
    finally:
        role.write_text(text)
    assert done.exit_code == 2
    assert f"this checkout does not hold the inputs staging's {source.id} was baked from" in (
        done.stderr)
    assert "changed: playbooks/roles/base/tasks/main.yml" in done.stderr
    with RUNNING.aside():
        assert builder_images(stack, "prod-cn") == []


def test_an_ami_prod_got_by_a_copy_rebakes_from_the_inputs_of_staging_that_baked_it(
        stack: Project, cli: Any) -> None:
    source = verified_in_staging(stack)
    copied = cli("--local", "promote", "demo", "app", "--to", "prod", "--json", root=stack.root)
    assert copied.exit_code == 0, copied.output
    with RUNNING.aside():
        prod_ec2 = stack.env_aws(stack.resolve("demo", "prod", "app")).client("ec2")
        [copy] = amis.describe(prod_ec2, image_ids=[json.loads(copied.stdout)["ami_id"]])
    # prod's own inputs differ (instance type, its own vars): the copy carries staging's
    # fingerprint, and staging's inputs are what prod-cn is compared with.
    assert copy.fingerprint == source.fingerprint
    prod, prod_cn = (stack.resolve("demo", env, "app") for env in ("prod", "prod-cn"))
    with RUNNING.step("promote"):
        same = check_same_inputs(stack, prod, prod_cn, copy)
    assert same.base.id != copy.source_ami
    assert f"not {copy.source_ami}" in same.base_note
