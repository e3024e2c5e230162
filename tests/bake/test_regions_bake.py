"""A real bake of a multi-region env: the AMI copied to the other regions, tagged like
it and re-encrypted with each region's key; a second bake finds every copy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.aws import AwsTarget, images, temporary
from tests.bake.leftovers import NOTHING_LEFT, ec2, leftovers
from tests.conftest import commit_all, copy_demo, require_root, run_builder, stack_for_bakes
from tests.release.emulated import REGIONS, make_multi_region

pytestmark = [pytest.mark.slow, pytest.mark.local]

PROD = "333333333333"
ROLE = f"arn:aws:iam::{PROD}:role/builder"


@pytest.fixture(scope="module")
def regions_bake_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_root()
    root = copy_demo(tmp_path_factory.mktemp("regions-bake") / "infra")
    make_multi_region(root)
    commit_all(root)
    with stack_for_bakes(root):
        yield root


def test_a_bake_copies_its_ami_to_every_region(regions_bake_root: Path) -> None:
    root = regions_bake_root
    first = run_builder("--local", "bake", "demo", "prod", "app", "--json", root=root)
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.loads(first.stdout)
    assert result["region"] == REGIONS[0]
    copies = {c["region"]: c for c in result["copies"]}
    assert set(copies) == set(REGIONS[1:]) and all(c["made"] for c in copies.values())

    home = AwsTarget(PROD, REGIONS[0], role_arn=ROLE)
    image = images.describe(ec2(root, home), image_ids=[result["ami_id"]])[0]
    assert image.status == images.AmiStatus.BAKED
    for region, copy in copies.items():
        client = ec2(root, AwsTarget(PROD, region, role_arn=ROLE))
        made = images.describe(client, image_ids=[copy["ami_id"]])[0]
        assert made.state == "available" and made.status == images.AmiStatus.BAKED
        assert made.tags[images.TAG_COPIED_FROM] == f"{REGIONS[0]}/{image.id}"
        own = (images.TAG_RUN_ID, images.TAG_OWNER, temporary.TAG_STARTED_AT)  # the copy's run
        assert {k: v for k, v in made.tags.items()
                if k not in (*own, images.TAG_COPIED_FROM)} == {
            k: v for k, v in image.tags.items() if k not in own}
        assert made.encrypted and all(f":{region}:" in k for k in made.kms_key_ids)
    assert leftovers(root, home) == NOTHING_LEFT

    second = run_builder("--local", "bake", "demo", "prod", "app", "--json", root=root)
    assert second.returncode == 0, second.stderr[-2000:]
    skipped = json.loads(second.stdout)
    assert skipped["skipped"] is True
    assert {c["region"]: (c["ami_id"], c["made"]) for c in skipped["copies"]} == {
        region: (copy["ami_id"], False) for region, copy in copies.items()}
