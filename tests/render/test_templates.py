"""User templates (tests/fixtures/templates): adapted to builder's contract or refused
with file:line, checked by `builder template check`, validated by the real Packer."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from builder import packer
from builder.config.layers import ConfigLoader
from builder.config.layout import Layout
from builder.errors import ValidationFailed
from builder.packer import PackerVersion
from builder.render.template import Rendered, Renderer, write
from tests.conftest import run_builder

PACKER_166 = PackerVersion(1, 6, 6)
PACKER_111 = PackerVersion(1, 11, 2)
ADAPTED = ("upgraded", "tutorial", "golden", "tagged", "ansible-local")
# comp → (template line, what the refusal says)
REFUSED = {
    "two-regions": (20, "the build lists 2 sources"),
    "mixed": (4, 'source "docker": builder bakes amazon-ebs sources only'),
    "windows": (15, 'communicator = "winrm"'),
    "ssm": (11, "ssh_interface = session_manager"),
    "other-playbook": (25, "playbook_file is ansible/elsewhere.yml, not the comp's playbook "
                           "ansible/upgraded.yml"),
}


@pytest.fixture
def zoo(fixture_root: Callable[[str], Path]) -> Path:
    return fixture_root("templates")


def render(root: Path, comp: str, version: PackerVersion = PACKER_166) -> Rendered:
    resolved = ConfigLoader(Layout(root), {}).resolve("zoo", "dev", comp)
    return Renderer(Layout(root), version).render(resolved)


def provisioners(hcl: str) -> list[str]:
    return re.findall(r'^\s*provisioner "([\w-]+)"', hcl, re.MULTILINE)


@pytest.mark.parametrize("comp", sorted(REFUSED))
def test_templates_builder_cant_use_are_refused_with_file_and_line(zoo: Path, comp: str
                                                                   ) -> None:
    line, message = REFUSED[comp]
    with pytest.raises(ValidationFailed) as caught:
        render(zoo, comp)
    problems = caught.value.problems
    assert any(p.file == zoo / "packer" / f"{comp}.pkr.hcl" and p.line == line
               and message in p.message for p in problems), problems
    assert caught.value.exit_code == 2


def test_the_ansible_provisioner_becomes_builders_callback_in_place(zoo: Path) -> None:
    rendered = render(zoo, "golden")
    assert provisioners(rendered.hcl) == ["file", "shell", "shell-local", "shell"]
    assert not re.search(r'^\s*provisioner "ansible"', rendered.hcl, re.MULTILINE)
    assert "inline           = [var.builder_provision_command]" in rendered.hcl
    # The user's lines stay as they wrote them; builder's copy pins path.root for Packer.
    assert 'source      = "${path.root}/files/motd"' in rendered.hcl
    pinned = rendered.packer_text()
    assert f'source      = "${{"{zoo / "packer"}"}}/files/motd"' in pinned
    assert "# the template reached through path.root or relative paths" in pinned  # comments


def test_without_ansible_builders_provisioning_follows_the_last_shell_step(zoo: Path) -> None:
    rendered = render(zoo, "tutorial")
    assert provisioners(rendered.hcl) == ["shell", "shell-local"]
    assert "required_plugins {" not in rendered.hcl  # Packer 1.6 rejects it
    newer = render(zoo, "tutorial", PACKER_111)
    assert newer.hcl.count("required_plugins {") == 1  # the template's own, kept


def test_tags_merge_with_the_templates_own(zoo: Path) -> None:
    hcl = render(zoo, "tagged").hcl
    assert "tags = merge(var.builder_tags, { Name = local.builder_ami_name }, " \
           "merge(local.cost_tags, {" in hcl
    assert "}), local.builder_reserved_tags)" in hcl
    assert "run_volume_tags = merge(var.builder_run_tags, local.cost_tags, " \
           "local.builder_reserved_run_tags)" in hcl
    assert "builder_ami_name = \"zoo-tagged-${local.stamp}\"" in hcl


def test_every_builder_setting_is_declared_and_passed(zoo: Path) -> None:
    rendered = render(zoo, "upgraded")
    run_values = {"builder_tags": {"builder:app": "zoo"}, "builder_ssh_port": 2222,
                  "builder_source_ami": "ami-1", "builder_build_time": "x"}
    values = json.loads(rendered.var_file_json(run_values))
    assert values["builder_ssh_port"] == 2222 and values["builder_source_ami"] == "ami-1"
    assert "builder_build_time" not in values  # not declared by the adapted copy
    assert values["instance_type"] == "t3.micro"  # the vars' value for a declared variable


@pytest.mark.parametrize("comp", ADAPTED)
def test_real_packer_validates_the_adapted_copies(zoo: Path, tmp_path: Path, comp: str
                                                  ) -> None:
    rendered = render(zoo, comp)
    files = write(rendered, tmp_path / comp, {"builder_source_ami": "ami-0123456789abcdef0"})
    assert packer.validate(files.template, files.var_file, zoo / "packer") == []


@pytest.mark.parametrize("comp", ADAPTED)
def test_the_packer_1_7_rendering_parses(zoo: Path, comp: str) -> None:
    import hcl2

    rendered = render(zoo, comp, PACKER_111)
    document = hcl2.loads(rendered.packer_text())
    assert len(document["packer"]) == 1
    kinds = [next(iter(p)) for p in document["build"][0]["provisioner"]]
    assert '"shell-local"' in kinds and '"ansible"' not in kinds


def test_packers_errors_point_at_the_users_lines(zoo: Path, cli: Any) -> None:
    """A line after the replaced provisioner: the adapted copy's line differs."""
    template = zoo / "packer" / "golden.pkr.hcl"
    text = template.read_text()
    template.write_text(text.replace('inline = ["sudo rm -f /tmp/motd"]',
                                     'inline = ["sudo rm -f /tmp/motd"]\n    bogus_option = 1'))
    result = cli("validate", "zoo", "--env", "dev", "--comp", "golden", "--json", root=zoo)
    errors = json.loads(result.stdout)["results"][0]["errors"]
    line = template.read_text().splitlines().index("    bogus_option = 1") + 1
    assert {"file": "packer/golden.pkr.hcl", "line": line,
            "message": 'packer validate: Unsupported argument: An argument named '
                       '"bogus_option" is not expected here.'} in errors


def test_every_item_of_packers_error_list_is_shown(tmp_path: Path) -> None:
    template = tmp_path / "t.pkr.hcl"
    template.write_text(
        'source "amazon-ebs" "x" {\n  region = "eu-west-1"\n  ami_name = "xyz"\n'
        '  instance_type = "t3.micro"\n  source_ami = "ami-1"\n  ssh_username = "u"\n}\n'
        'build {\n  sources = ["source.amazon-ebs.x"]\n  provisioner "ansible" {\n'
        '    playbook_file = "nope.yml"\n    galaxy_file   = "nope2.yml"\n  }\n}\n')
    var_file = tmp_path / "t.pkrvars.json"
    var_file.write_text("{}")
    problems = packer.validate(template, var_file)
    messages = [p.message for p in problems if p.line == 10]
    assert any("playbook_file: nope.yml is invalid" in m for m in messages)
    assert any("galaxy_file: nope2.yml is invalid" in m for m in messages)
    assert all(m.startswith('packer validate: Failed preparing provisioner-block "ansible"')
               for m in messages)


def test_the_fingerprinted_text_does_not_depend_on_the_checkout(zoo: Path, tmp_path: Path
                                                                ) -> None:
    elsewhere = shutil.copytree(zoo, tmp_path / "elsewhere")
    assert render(zoo, "golden").digest() == render(elsewhere, "golden").digest()


def test_template_check_lists_changes_in_order_and_refusals(zoo: Path) -> None:
    done = run_builder("template", "check", "--json", root=zoo)
    assert done.returncode == 2, done.stderr
    report = {t["name"]: t for t in json.loads(done.stdout)["templates"]}
    assert set(report) == {*ADAPTED, *REFUSED, "ubuntu"}
    assert report["ubuntu"]["follows_contract"] and report["ubuntu"]["combos"] == ["zoo/dev/knobs"]
    for name in ADAPTED:
        assert report[name]["ok"] and not report[name]["cannot_handle"]
    for name, (line, message) in REFUSED.items():
        assert not report[name]["ok"]
        assert any(p["line"] == line and message in p["message"]
                   for p in report[name]["cannot_handle"])
    golden = report["golden"]["changes"]
    lines = [c["line"] for c in golden if c["line"] is not None]
    assert lines == sorted(lines)
    assert golden[-2]["message"].startswith('provisioner "ansible"')
    assert golden[-2]["line"] == 59 and golden[-2]["file"] == "packer/golden.pkr.hcl"
    one = run_builder("template", "check", "golden", root=zoo)
    assert one.returncode == 0, one.stderr
    assert "packer/golden.pkr.hcl:59: provisioner \"ansible\"" in one.stdout
    assert one.stdout.strip().endswith("1 template, all usable")


def test_the_bundled_template_is_used_as_it_is(demo_root: Path) -> None:
    done = run_builder("template", "check", "ubuntu", "--json", root=demo_root)
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)["templates"]
    assert entry["follows_contract"] and entry["changes"] == []


KNOBS = {
    "iam_instance_profile": "packer-build", "root_volume_size_gb": 16,
    "associate_public_ip_address": False, "ami_tags": {"Team": "payments"},
    "ami_description": "zoo image", "spot_price": "auto",
    "spot_instance_types": ["t3.micro", "t3a.micro"], "run_tags": {"CostCenter": "cc-1"},
    "temporary_iam_instance_profile_policy_document": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["logs:*"], "Resource": ["*"]}]},
}


def knobs_root(zoo: Path, values: dict[str, Any]) -> Path:
    import yaml

    (zoo / "vars/zoo/dev/knobs.yml").write_text(yaml.safe_dump(values))
    return zoo


def test_bundled_knobs_render_only_when_set(zoo: Path, demo_root: Path) -> None:
    demo = ConfigLoader(Layout(demo_root), {}).resolve("demo", "dev", "app")
    plain = Renderer(Layout(demo_root), PACKER_166).render(demo).hcl
    for knob in ("iam_instance_profile", "spot_price", "spot_instance_types",
                 "temporary_iam_instance_profile_policy_document", "ami_description"):
        assert f"{knob} = var.{knob}" not in plain and f'variable "{knob}"' not in plain
    assert "instance_type = var.instance_type" in plain
    rendered = render(knobs_root(zoo, KNOBS), "knobs")
    values = json.loads(rendered.var_file_json())
    for knob, value in KNOBS.items():
        if knob != "ami_tags":  # a mapping: merged with common/knobs.yml's
            assert values[knob] == value, knob
    assert values["ami_tags"] == {"Team": "payments", "Backup": "daily"}
    assert "spot_instance_types = var.spot_instance_types" in rendered.hcl
    assert "instance_type = var.instance_type" not in rendered.hcl  # spot types replace it
    assert "tags            = merge(var.ami_tags, var.builder_tags)" in rendered.hcl


@pytest.mark.parametrize("version", [PACKER_166, PACKER_111])
def test_bundled_knobs_for_both_packer_syntaxes(zoo: Path, tmp_path: Path,
                                                version: PackerVersion) -> None:
    import hcl2

    rendered = render(knobs_root(zoo, KNOBS), "knobs", version)
    source = hcl2.loads(rendered.hcl)["source"][0]['"amazon-ebs"']['"image"']
    assert source["iam_instance_profile"] == "${var.iam_instance_profile}"
    assert source["launch_block_device_mappings"][0]["volume_type"] == "${var.root_volume_type}"
    if version == packer.installed_version():
        files = write(rendered, tmp_path)
        assert packer.validate(files.template, files.var_file) == []


@pytest.mark.parametrize(("values", "message"), [
    ({"ami_tags": {"builder:status": "verified"}}, "builder:status: builder:* tags are"),
    ({"root_volume_size_gb": "big"}, "root_volume_size_gb: expected a number"),
    ({"associate_public_ip_address": "maybe"}, "expected true or false"),
    ({"pre_provision_shell": "apt-get upgrade -y"}, "must be a list of shell commands"),
])
def test_bad_knob_values_are_refused_at_their_line(zoo: Path, values: dict[str, Any],
                                                   message: str) -> None:
    knobs_root(zoo, values)
    done = run_builder("validate", "zoo", "--env", "dev", "--comp", "knobs", "--offline",
                       "--json", root=zoo)
    assert done.returncode == 2
    errors = json.loads(done.stdout)["results"][0]["errors"]
    assert any(message in e["message"] and e["file"] == "vars/zoo/dev/knobs.yml" and e["line"]
               for e in errors), errors


def test_template_provisioning_keeps_the_templates_provisioners(zoo: Path) -> None:
    (zoo / "vars/zoo/dev/upgraded.yml").write_text("builder_provisioning: template\n")
    rendered = render(zoo, "upgraded")
    assert provisioners(rendered.hcl) == ["shell", "ansible", "shell-local"]
    assert "hygiene and checks over direct SSH (builder_provisioning: template)" in rendered.hcl
    assert rendered.adaptation is not None
    assert rendered.adaptation.changes[-2].text.startswith("builder_provisioning: template")
    # A playbook other than the comp's is the template's business then.
    (zoo / "vars/zoo/dev/other-playbook.yml").write_text("builder_provisioning: template\n")
    assert provisioners(render(zoo, "other-playbook").hcl) == ["shell", "ansible", "shell-local"]


def test_builder_provisioning_takes_builder_or_template(zoo: Path) -> None:
    (zoo / "vars/zoo/dev/upgraded.yml").write_text("builder_provisioning: packer\n")
    with pytest.raises(Exception, match="builder_provisioning: must be builder or template"):
        render(zoo, "upgraded")


def test_the_templates_own_network_places_builders_security_group(zoo: Path) -> None:
    template = zoo / "packer" / "upgraded.pkr.hcl"
    text = template.read_text()
    template.write_text(text.replace('  ssh_username = "ubuntu"\n', '  ssh_username = "ubuntu"\n'
                                     '  subnet_filter {\n    filters = {\n'
                                     '      "tag:Tier" = "${var.instance_type}-build"\n    }\n'
                                     '    most_free = true\n  }\n'))
    assert render(zoo, "upgraded").network["subnet_filter"] == {"tag:Tier": "t3.micro-build"}
    template.write_text(text.replace('  ssh_username = "ubuntu"\n', '  ssh_username = "ubuntu"\n'
                                     '  subnet_id = local.nowhere\n'))
    with pytest.raises(ValidationFailed, match=r"subnet_id = local\.nowhere: builder can.t tell"):
        render(zoo, "upgraded")


def test_a_template_calling_back_without_builders_tags_is_refused(zoo: Path) -> None:
    """The issue's "no builder_tags" case: an AMI builder can't find must not be made."""
    bundled = (Path(__file__).resolve().parents[2] / "packer" / "ubuntu.pkr.hcl.j2").read_text()
    (zoo / "packer" / "upgraded.pkr.hcl.j2").write_text(
        bundled.replace("= var.builder_tags", "= {}").replace(
            "merge(var.ami_tags, var.builder_tags)", "var.ami_tags"))
    (zoo / "packer" / "upgraded.pkr.hcl").unlink()
    with pytest.raises(Exception, match=r"doesn't use var\.builder_tags"):
        render(zoo, "upgraded")
    done = run_builder("template", "check", "upgraded", "--json", root=zoo)
    assert done.returncode == 2
    (entry,) = json.loads(done.stdout)["templates"]
    assert entry["follows_contract"] and "var.builder_tags" in entry["cannot_handle"][0]["message"]


def test_files_the_templates_steps_read_are_in_the_fingerprint(zoo: Path) -> None:
    from datetime import UTC, datetime

    from builder.aws.images import Image
    from builder.bake.plan import pin_source
    from builder.project import Project

    assert set(render(zoo, "golden").template_files) == {
        zoo / "packer/files/motd", zoo / "packer/scripts/install-motd.sh"}
    base = Image("ami-0123456789abcdef0", "base", "available", "099720109477",
                 datetime.now(UTC))

    def fingerprint() -> str:
        project = Project.open(str(zoo))
        resolved = project.resolve("zoo", "dev", "golden")
        return pin_source(project, resolved, base)[2].value

    before = fingerprint()
    (zoo / "packer/files/motd").write_text("Another welcome.\n")
    assert fingerprint() != before
