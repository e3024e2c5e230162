"""Rendering: template lookup, Jinja, HCL parsing, the var file, Packer versions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from builder import packer
from builder.config.layers import ConfigLoader
from builder.config.layout import Layout
from builder.errors import TemplateError, ValidationFailed
from builder.packer import PackerVersion
from builder.render.template import Renderer, type_mismatch, write

PACKER_166 = PackerVersion(1, 6, 6)
PACKER_111 = PackerVersion(1, 11, 2)


def renderer(root: Path, version: PackerVersion = PACKER_166) -> Renderer:
    return Renderer(Layout(root), version)


def resolve(root: Path, env: str = "dev", comp: str = "app", **overrides: str):  # type: ignore[no-untyped-def]
    return ConfigLoader(Layout(root), overrides).resolve("demo", env, comp)


def test_bundled_template_renders_with_filter_and_declared_vars_only(demo_root: Path) -> None:
    shutil.rmtree(demo_root / "packer")  # the bundled copy is found instead
    rendered = renderer(demo_root).render(resolve(demo_root))
    assert rendered.source.parent == Layout(demo_root).bundled / "packer"
    assert "source_ami_filter {" in rendered.hcl
    assert 'required_plugins {' not in rendered.hcl
    values = json.loads(rendered.var_file_json())
    assert values["source_ami_filter"] == {
        "owners": ["099720109477"],
        "name": "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
    }
    assert values["aws_region"] == "eu-west-1"
    assert values["ami_name"] == "demo-dev-app"
    # Only declared names: app vars (app_port, components) stay out of Packer.
    assert "app_port" not in values and "components" not in values
    assert not any(key.startswith("builder_") for key in values)


def test_source_ami_by_id_renders_the_id_block(demo_root: Path) -> None:
    rendered = renderer(demo_root).render(
        resolve(demo_root, source_ami="ami-0123456789abcdef0", source_ami_filter=""))
    assert "source_ami = var.source_ami" in rendered.hcl
    assert "source_ami_filter {" not in rendered.hcl
    assert json.loads(rendered.var_file_json())["source_ami"] == "ami-0123456789abcdef0"


def test_run_values_only_where_declared(demo_root: Path) -> None:
    rendered = renderer(demo_root).render(resolve(demo_root))
    values = json.loads(rendered.var_file_json({"builder_ssh_port": 2222, "builder_nope": 1}))
    assert values["builder_ssh_port"] == 2222
    assert "builder_nope" not in values


def test_root_template_wins_over_bundled(demo_root: Path) -> None:
    (demo_root / "packer" / "ubuntu.pkr.hcl").write_text(
        'variable "aws_region" {\n  type = string\n}\n'
        'source "amazon-ebs" "x" {\n  region = var.aws_region\n}\n'
        'build {\n  sources = ["source.amazon-ebs.x"]\n}\n')
    (demo_root / "packer" / "ubuntu.pkr.hcl.j2").unlink()
    rendered = renderer(demo_root).render(resolve(demo_root))
    assert rendered.source == demo_root / "packer" / "ubuntu.pkr.hcl"
    assert json.loads(rendered.var_file_json()) == {"aws_region": "eu-west-1"}


def test_unknown_template_names_the_key_and_where_it_looked(demo_root: Path) -> None:
    with pytest.raises(Exception, match="packer_template: packer template 'nope' not found"):
        renderer(demo_root).render(resolve(demo_root, packer_template="nope"))


def _custom(root: Path, body: str, name: str = "custom") -> None:
    (root / "packer" / f"{name}.pkr.hcl").write_text(body)


def test_missing_required_variable_names_it_and_the_template(demo_root: Path) -> None:
    _custom(demo_root, 'variable "aws_region" {\n  type = string\n}\n\n'
                       'variable "bucket" {\n  type = string\n}\n')
    with pytest.raises(ValidationFailed) as caught:
        renderer(demo_root).render(resolve(demo_root, packer_template="custom"))
    problem = caught.value.problems[0]
    assert problem.file == demo_root / "packer" / "custom.pkr.hcl"
    assert problem.line == 5
    assert "variable 'bucket' of template custom.pkr.hcl has no default and no value" in (
        problem.message)


def test_wrong_type_points_at_the_value(demo_root: Path) -> None:
    _custom(demo_root, 'variable "app_port" {\n  type = list(number)\n}\n')
    with pytest.raises(ValidationFailed) as caught:
        renderer(demo_root).render(resolve(demo_root, packer_template="custom"))
    problem = caught.value.problems[0]
    assert problem.file == demo_root / "vars/demo/common/app.yml"
    assert problem.line == 2
    assert "expected a list" in problem.message


def test_hcl_syntax_error_has_file_and_line(demo_root: Path) -> None:
    _custom(demo_root, 'variable "a" {\n  type = string\n  default =\n}\n')
    with pytest.raises(TemplateError) as caught:
        renderer(demo_root).render(resolve(demo_root, packer_template="custom"))
    assert caught.value.problem.file == demo_root / "packer" / "custom.pkr.hcl"
    assert caught.value.problem.line in (3, 4)
    assert caught.value.message.startswith("HCL syntax:")


def test_an_error_line_in_a_jinja_template_is_the_same_on_every_packer(demo_root: Path
                                                                      ) -> None:
    # Packer 1.7+ gets builder's required_plugins block on top of the rendered text.
    (demo_root / "packer" / "custom.pkr.hcl.j2").write_text(
        '# {{ app }}\nvariable "a" {\n  type = string\n}\n\n'
        'variable "b" {\n  type = string\n  default =\n}\n')
    lines = set()
    for version in (PACKER_166, PACKER_111):
        with pytest.raises(TemplateError) as caught:
            renderer(demo_root, version).render(resolve(demo_root, packer_template="custom"))
        lines.add(caught.value.problem.line)
    assert lines in ({8}, {9})


def test_jinja_error_in_template(demo_root: Path) -> None:
    (demo_root / "packer" / "custom.pkr.hcl.j2").write_text('# ok\n{{ no_such_var }}\n')
    with pytest.raises(TemplateError) as caught:
        renderer(demo_root).render(resolve(demo_root, packer_template="custom"))
    assert caught.value.problem.line == 2
    assert "no_such_var" in caught.value.message


def test_required_plugins_only_for_packer_1_7_and_later(demo_root: Path) -> None:
    old = renderer(demo_root, PACKER_166).render(resolve(demo_root))
    new = renderer(demo_root, PACKER_111).render(resolve(demo_root))
    assert "required_plugins {" not in old.hcl
    assert new.hcl.startswith(packer.REQUIRED_PLUGINS_BLOCK)
    assert 'source  = "github.com/hashicorp/amazon"' in new.hcl
    assert new.variables == old.variables


def test_required_plugins_on_old_packer(demo_root: Path) -> None:
    """A template following builder's contract is refused (builder adds the block itself);
    a user's template that builder adapts loses the block on Packer 1.6."""
    _custom(demo_root, packer.REQUIRED_PLUGINS_BLOCK + 'variable "a" {\n  default = 1\n}\n'
            'build {\n  provisioner "shell-local" {\n'
            '    inline = [var.builder_provision_command]\n  }\n}\n')
    with pytest.raises(TemplateError, match=r"Packer 1\.6\.6 rejects"):
        renderer(demo_root).render(resolve(demo_root, packer_template="custom"))
    _custom(demo_root, packer.REQUIRED_PLUGINS_BLOCK + 'source "amazon-ebs" "x" {\n'
            '  ami_name = "x"\n}\nbuild {\n  sources = ["source.amazon-ebs.x"]\n}\n')
    old = renderer(demo_root).render(resolve(demo_root, packer_template="custom"))
    assert "required_plugins {" not in old.hcl
    assert old.adaptation is not None
    assert old.adaptation.changes[0].text.startswith("packer block removed")
    rendered = renderer(demo_root, PACKER_111).render(resolve(demo_root, packer_template="custom"))
    assert rendered.hcl.count("required_plugins {") == 1


def test_each_distinct_text_is_parsed_once(demo_root: Path) -> None:
    r = renderer(demo_root)
    for env in ("dev", "staging"):
        for comp in ("app", "worker"):
            r.render(resolve(demo_root, env, comp))
    assert len(r._parsed) == 1


def test_write_outputs_template_var_file_and_resolved_vars(demo_root: Path, tmp_path: Path) -> None:
    rendered = renderer(demo_root).render(resolve(demo_root))
    files = write(rendered, tmp_path / "out")
    assert files.template.read_text() == rendered.hcl
    assert json.loads(files.var_file.read_text())["aws_region"] == "eu-west-1"
    resolved_vars = json.loads(files.vars_json.read_text())
    assert resolved_vars["app_port"] == 8080 and resolved_vars["comp"] == "app"


@pytest.mark.parametrize(
    ("value", "type_expr", "ok"),
    [
        ("x", "string", True), (3, "string", True), ([1], "string", False),
        (3, "number", True), ("3.5", "number", True), ("x", "number", False),
        (True, "number", False), (True, "bool", True), ("false", "bool", True),
        ("yes", "bool", False), (["a"], "list(string)", True), ("a", "list(string)", False),
        ([1, "x"], "list(number)", False), ({"a": "b"}, "map(string)", True),
        ({"a": [1]}, "map(string)", False), ({"owners": ["1"], "name": "n"},
                                             "object({ owners = list(string), name = string })",
                                             True),
        ({"owners": ["1"]}, "object({ owners = list(string), name = string })", False),
        ({"x": 1}, "any", True),
    ],
)
def test_type_mismatch(value: object, type_expr: str, ok: bool) -> None:
    assert (type_mismatch(value, type_expr) is None) is ok


def test_packer_version_parsing() -> None:
    assert PackerVersion.parse("Packer v1.6.6\n") == PACKER_166
    assert PackerVersion.parse("1.11.2") == PACKER_111
    assert not PACKER_166.needs_required_plugins
    assert PACKER_111.needs_required_plugins
    assert PackerVersion(1, 7, 0).needs_required_plugins


def test_machine_readable_lines() -> None:
    line = packer.parse_machine_line(
        "1795724183,,ui,say,==> amazon-ebs.x: Creating AMI%!(PACKER_COMMA) wait\\n")
    assert line is not None
    assert line.kind == "ui" and line.message == "==> amazon-ebs.x: Creating AMI, wait\n"
    assert packer.phase_of(line.message) == "image"
    artifact = packer.parse_machine_line("1,amazon-ebs.x,artifact,0,id,eu-west-1:ami-123")
    assert artifact is not None and artifact.data == ("0", "id", "eu-west-1:ami-123")
    assert packer.parse_machine_line("not machine readable") is None


def test_the_amis_packer_registers_are_read_from_its_output() -> None:
    """Its temporary (unencrypted) AMI has no tags and a random name: only its id in the
    output lets a failed bake remove it."""
    assert packer.registered_image("    amazon-ebs.image: AMI: ami-6f583a0be143de8b3") == (
        "ami-6f583a0be143de8b3")
    assert packer.registered_image(
        "==> amazon-ebs.image: Adding tags to AMI (ami-51fa8cd8c9bd8a453)...") == (
        "ami-51fa8cd8c9bd8a453")
    assert packer.registered_image("==> amazon-ebs.image: Creating AMI JjZWmom from "
                                   "instance i-d053af288acc28ad9") is None


def test_packer_argv_is_exact(tmp_path: Path) -> None:
    exe = packer.executable()
    template, var_file = tmp_path / "t.pkr.hcl", tmp_path / "t.pkrvars.json"
    assert packer.validate_argv(template, var_file) == [
        exe, "validate", "-var-file=t.pkrvars.json", "t.pkr.hcl"]
    assert packer.build_argv(template, var_file) == [
        exe, "build", "-machine-readable", "-color=false", "-on-error=cleanup",
        "-var-file=t.pkrvars.json", "t.pkr.hcl"]


def test_real_packer_validates_the_bundled_template_both_ways(demo_root: Path, tmp_path: Path
                                                             ) -> None:
    r = Renderer(Layout(demo_root), packer.installed_version())
    for name, overrides in (("filter", {}),
                            ("id", {"source_ami": "ami-0123456789abcdef0",
                                    "source_ami_filter": ""})):
        files = write(r.render(resolve(demo_root, **overrides)), tmp_path / name)
        assert packer.validate(files.template, files.var_file) == []


def test_real_packer_validate_reports_file_and_line(tmp_path: Path) -> None:
    template = tmp_path / "t.pkr.hcl"
    template.write_text('source "amazon-ebs" "x" {\n  region = "eu-west-1"\n  bogus = 1\n}\n'
                        'build {\n  sources = ["source.amazon-ebs.x"]\n}\n')
    var_file = tmp_path / "t.pkrvars.json"
    var_file.write_text("{}")
    problems = packer.validate(template, var_file)
    assert any(p.line == 3 and p.file == template and "bogus" in p.message for p in problems)
