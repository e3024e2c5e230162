"""User templates (tests/fixtures/templates) baked in local mode: the playbook really
applied (its file is in the local image), builder's tags on the AMI and snapshots, or a
refusal (exit 2) before anything is made in AWS."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.aws import images
from builder.config.models import Combo
from tests.bake.leftovers import NOTHING_LEFT, ec2, leftovers
from tests.conftest import FIXTURES, commit_all, require_root, run_builder, stack_for_bakes

pytestmark = [pytest.mark.slow, pytest.mark.local]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The templates fixture repo (a git checkout) with a local stack and build host."""
    require_root()
    root = Path(shutil.copytree(FIXTURES / "templates", tmp_path_factory.mktemp("zoo") / "zoo"))
    commit_all(root)
    with stack_for_bakes(root):
        yield root


def bake(root: Path, comp: str) -> dict[str, object]:
    done = run_builder("--local", "bake", "zoo", "dev", comp, "--json", root=root)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout)
    assert leftovers(root) == NOTHING_LEFT
    return result


def in_image(root: Path, ami_id: object, path: str) -> Path:
    return root / ".builder" / "local" / "images" / str(ami_id) / path.lstrip("/")


def tags_of(root: Path, ami_id: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    client = ec2(root)
    image = images.describe(client, image_ids=[ami_id])[0]
    snapshots = client.describe_snapshots(SnapshotIds=list(image.snapshot_ids))["Snapshots"]
    return dict(image.tags), [{t["Key"]: t["Value"] for t in s.get("Tags", [])}
                              for s in snapshots]


def test_hcl2_upgrade_output_bakes_with_its_playbook(zoo: Path) -> None:
    result = bake(zoo, "upgraded")
    marker = in_image(zoo, result["ami_id"], "/etc/zoo/upgraded.txt")
    assert marker.read_text() == "upgraded provisioned for zoo/dev/upgraded\n"
    tags, snapshots = tags_of(zoo, str(result["ami_id"]))
    assert tags["builder:status"] == "baked" and tags["builder:comp"] == "upgraded"
    assert tags["builder:source-ami"] == result["source_ami"]
    assert (tags["OS_Version"], tags["Release"]) == ("Ubuntu", "Latest")
    assert tags["Name"].startswith("zoo-upgraded-")
    assert snapshots and all(s["builder:fingerprint"] == result["fingerprint"] for s in snapshots)


def test_shell_only_template_gets_builders_provisioning_after_its_steps(zoo: Path) -> None:
    result = bake(zoo, "tutorial")
    assert in_image(zoo, result["ami_id"], "/etc/zoo-tutorial-greeting.txt").read_text() == (
        "hello from the tutorial\n")
    assert in_image(zoo, result["ami_id"], "/etc/zoo/tutorial.txt").is_file()


def test_relative_paths_and_path_root_resolve_from_the_templates_folder(zoo: Path) -> None:
    result = bake(zoo, "golden")
    assert in_image(zoo, result["ami_id"], "/etc/motd").read_text() == (
        "Welcome to a zoo golden image.\n")
    assert in_image(zoo, result["ami_id"], "/etc/zoo/golden.txt").is_file()
    tags, _ = tags_of(zoo, str(result["ami_id"]))
    assert (tags["Team"], tags["ManagedBy"]) == ("platform", "packer")


def test_the_templates_tags_win_except_builders_own(zoo: Path) -> None:
    result = bake(zoo, "tagged")
    assert in_image(zoo, result["ami_id"], "/etc/zoo/tagged.txt").is_file()
    tags, snapshots = tags_of(zoo, str(result["ami_id"]))
    assert tags["builder:status"] == "baked"  # the template's "golden" lost
    assert tags["Name"].startswith("zoo tagged ")  # the template's Name won
    assert (tags["Team"], tags["CostCenter"]) == ("payments", "cc-1234")
    assert tags["builder:build-id"]
    for snapshot in snapshots:
        assert snapshot["Backup"] == "never" and snapshot["builder:status"] == "baked"


@pytest.mark.parametrize("comp", ["mixed", "windows"])
def test_a_template_builder_cant_use_is_refused_before_anything_is_made(zoo: Path, comp: str
                                                                        ) -> None:
    before = {i.id for i in images.images_of(ec2(zoo), Combo("zoo", "dev", comp))}
    done = run_builder("--local", "bake", "zoo", "dev", comp, root=zoo)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"packer/{comp}.pkr.hcl:" in done.stderr
    assert "packer:" not in done.stderr and "provisioning" not in done.stderr
    assert {i.id for i in images.images_of(ec2(zoo), Combo("zoo", "dev", comp))} == before
    assert leftovers(zoo) == NOTHING_LEFT


def test_bundled_template_knobs_and_shell_steps_around_the_playbook(zoo: Path) -> None:
    result = bake(zoo, "knobs")
    ami_id = str(result["ami_id"])
    assert in_image(zoo, ami_id, "/etc/zoo/pre.txt").is_file()
    # post_provision_shell ran after the playbook: it saw the playbook's file.
    assert in_image(zoo, ami_id, "/etc/zoo-post-saw.txt").read_text().split() == [
        "knobs.txt", "pre.txt"]
    tags, snapshots = tags_of(zoo, ami_id)
    assert (tags["Team"], tags["Backup"], tags["builder:status"]) == ("payments", "daily",
                                                                     "baked")
    assert all(s["Team"] == "payments" for s in snapshots)
    # Local mode made the VPC, subnet and instance profile the vars name; the instance ran
    # in that subnet.
    client = ec2(zoo)
    (subnet,) = client.describe_subnets(Filters=[{"Name": "tag:Tier", "Values": ["build"]}])[
        "Subnets"]
    (vpc,) = client.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["zoo-build"]}])[
        "Vpcs"]
    assert subnet["VpcId"] == vpc["VpcId"]
    transcript = (Path(str(result["artifacts"])) / "packer.out").read_text()
    assert f"Found Subnet ID: {subnet['SubnetId']}" in transcript


def test_template_provisioning_runs_the_templates_ansible_then_hygiene(zoo: Path) -> None:
    """The escape hatch: Packer's own ansible provisioner (no builder vars reach the
    playbook), then builder's hygiene and checks."""
    done = run_builder("--local", "-e", "builder_provisioning=template", "bake", "zoo", "dev",
                       "upgraded", "--force", "--json", root=zoo)
    assert done.returncode == 0, done.stderr[-3000:]
    ami_id = json.loads(done.stdout)["ami_id"]
    assert in_image(zoo, ami_id, "/etc/zoo/upgraded.txt").read_text() == (
        "upgraded provisioned for -/-/-\n")
    assert "hygiene and checks only" in done.stderr
    assert in_image(zoo, ami_id, "/etc/machine-id").read_text() == ""
    assert leftovers(zoo) == NOTHING_LEFT


def test_packers_own_errors_in_a_bake_name_the_templates_line(zoo: Path) -> None:
    """Every item of Packer's error list, at the user's line (here the kept ansible
    provisioner's playbook is missing)."""
    (zoo / "ansible" / "elsewhere.yml").unlink()
    done = run_builder("--local", "-e", "builder_provisioning=template", "bake", "zoo", "dev",
                       "other-playbook", root=zoo)
    assert done.returncode == 1, done.stderr[-2000:]
    lines = (zoo / "packer" / "other-playbook.pkr.hcl").read_text().splitlines()
    line = lines.index('  provisioner "ansible" {') + 1
    last = done.stderr.strip().splitlines()[-1]
    assert f"packer/other-playbook.pkr.hcl:{line}: Failed preparing provisioner-block " \
           '"ansible"' in last
    assert "playbook_file:" in last and "elsewhere.yml is invalid" in last
    assert leftovers(zoo) == NOTHING_LEFT
