"""`builder bake ... --release` end to end in local mode: real Packer, real Ansible, the
real build host, then the blue/green release of the new AMI (needs root, like every bake)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.aws import images
from builder.config.models import Combo
from builder.local.mode import LOCAL
from builder.project import Project
from tests.conftest import run_builder
from tests.release.emulated import fleet_state, image_tags

pytestmark = [pytest.mark.local, pytest.mark.slow]

DEV_APP = Combo("demo", "dev", "app")


def test_bake_release_takes_the_comp_from_source_to_a_new_asg(bake_root: Path
                                                              ) -> None:
    project = Project.open(str(bake_root), local_mode=LOCAL)
    before = fleet_state(project, DEV_APP)

    done = run_builder("--local", "bake", "demo", "dev", "app", "--release", "--json",
                       root=bake_root)

    assert done.returncode == 0, done.stderr
    [entry] = json.loads(done.stdout)
    baked, released = entry["bake"], entry["release"]
    assert not baked["skipped"] and released["ami_id"] == baked["ami_id"]
    assert (released["outcome"], released["deployment_status"]) == ("verified", "Succeeded")
    after = fleet_state(project, DEV_APP)
    assert after.asg == released["asg_after"] != before.asg == released["asg_before"]
    assert (after.default_version, after.default_image) == (released["new_version"],
                                                            baked["ami_id"])
    assert image_tags(project, DEV_APP, baked["ami_id"])[images.TAG_STATUS] == "verified"

    # Unchanged inputs: the bake is skipped and the release has nothing to do.
    again = run_builder("--local", "bake", "demo", "dev", "app", "--release", "--json",
                        root=bake_root)
    assert again.returncode == 0, again.stderr
    [entry] = json.loads(again.stdout)
    assert entry["bake"]["skipped"] and entry["release"]["outcome"] == "unchanged"
    assert fleet_state(project, DEV_APP) == after
