"""`builder validate`, `vars`, `render` and the CLI's contract (exit codes, errors, JSON)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from builder.cli import app, hoist_globals
from tests.conftest import run_builder

BROKEN_EXPECTED = {
    ("dev", "web"): ("vars/shop/dev/common.yml", 3, "ami_name: Jinja: 'customer' is undefined"),
    ("prod", None): ("vars/shop/prod/common.yml", 2, "YAML:"),
    ("qa", "web"): ("vars/shop/qa/common.yml", 2, "is not a 12-digit account id"),
    ("stage", "web"): ("packer/broken.pkr.hcl", 8, "HCL syntax:"),
    ("test", "web"): ("packer/shop.pkr.hcl", 9, "variable 'shop_bucket' of template shop.pkr.hcl"),
}


def test_validate_reports_every_problem_with_file_and_line(
        fixture_root: Callable[[str], Path]) -> None:
    root = fixture_root("broken")
    done = run_builder("validate", "--offline", "--json", root=root)
    assert done.returncode == 2, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    found = {(r["env"], r["comp"]): r["errors"] for r in report["results"]}
    assert set(found) == set(BROKEN_EXPECTED)
    for key, (file, line, text) in BROKEN_EXPECTED.items():
        errors = found[key]
        assert len(errors) == 1, errors
        assert errors[0]["file"] == file
        assert errors[0]["line"] == line
        assert text in errors[0]["message"]


def test_validate_text_lists_them_too(fixture_root: Callable[[str], Path], cli: Any) -> None:
    root = fixture_root("broken")
    result = cli("validate", "--offline", root=root)
    assert result.exit_code == 2
    assert "vars/shop/qa/common.yml:2: aws_account_id: '12345' is not a 12-digit account id" in (
        result.stdout)
    assert "5 combos, 5 with problems" in result.stdout


def test_validate_scope_options(fixture_root: Callable[[str], Path], cli: Any) -> None:
    root = fixture_root("broken")
    result = cli("validate", "shop", "--env", "qa", "--comp", "web", "--offline", "--json",
                 root=root)
    report = json.loads(result.stdout)
    assert [(r["env"], r["comp"]) for r in report["results"]] == [("qa", "web")]


def test_validate_example_is_green_with_packer_and_ansible(demo_root: Path) -> None:
    done = run_builder("validate", "--json", root=demo_root)
    report = json.loads(done.stdout)
    assert done.returncode == 0, report
    assert report["ok"] is True
    assert len(report["results"]) == 6


def test_validate_runs_packer_and_the_ansible_syntax_check(demo_root: Path, cli: Any) -> None:
    playbook = demo_root / "playbooks/demo/packer-worker.yml"
    playbook.write_text(playbook.read_text() + "    - role_that_does_not_exist\n")
    template = demo_root / "packer/ubuntu.pkr.hcl.j2"
    template.write_text(template.read_text().replace(
        '  ssh_timeout          = "10m"', '  ssh_timeout          = "10m"\n  bogus_setting = 1'))
    result = cli("validate", "demo", "--env", "dev", "--json", root=demo_root)
    assert result.exit_code == 2
    errors = {r["comp"]: r["errors"] for r in json.loads(result.stdout)["results"]}
    bogus_line = template.read_text().splitlines().index("  bogus_setting = 1") + 1
    for comp in ("app", "worker"):
        assert {"file": "packer/ubuntu.pkr.hcl.j2", "line": bogus_line,
                "message": 'packer validate: Unsupported argument: An argument named '
                           '"bogus_setting" is not expected here.'} in errors[comp]
    assert any(e["message"].startswith("ansible syntax:") and
               e["file"] == "playbooks/demo/packer-worker.yml" for e in errors["worker"])
    assert not any("ansible" in e["message"] for e in errors["app"])


def test_vars_json_shape(demo_root: Path, cli: Any) -> None:
    result = cli("vars", "demo", "prod", "app", "--json", root=demo_root)
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert set(doc) == {"app", "env", "comp", "vars", "origins"}
    assert (doc["app"], doc["env"], doc["comp"]) == ("demo", "prod", "app")
    assert doc["vars"]["instance_type"] == "t3.small"
    assert doc["origins"]["instance_type"] == "vars/demo/prod/app.yml:1"
    assert doc["origins"]["promote_from"] == "vars/demo/prod/common.yml:7"
    assert set(doc["vars"]) == set(doc["origins"])


def test_vars_table_and_global_options_anywhere(demo_root: Path, cli: Any) -> None:
    result = cli("vars", "demo", "dev", "app", "-e", "ami_keep=9", root=demo_root)
    line = next(x for x in result.stdout.splitlines() if x.startswith("ami_keep"))
    assert line.split() == ["ami_keep", "9", "<command", "line", "-e>"]


def test_render_writes_files_and_prints_paths(demo_root: Path, cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "rendered"
    result = cli("render", "demo", "staging", "worker", "--out", str(out), "--json",
                 root=demo_root)
    assert result.exit_code == 0
    paths = json.loads(result.stdout)
    assert paths == {"template": str(out / "ubuntu.pkr.hcl"),
                     "var_file": str(out / "ubuntu.pkrvars.json"),
                     "vars": str(out / "vars.json")}
    assert json.loads(Path(paths["var_file"]).read_text())["kms_key_id"] == "alias/demo-staging-ami"


def test_bad_input_is_one_line_and_exit_2(demo_root: Path) -> None:
    (demo_root / "vars/demo/dev/app.yml").write_text("ami_keep: lots\n")
    done = run_builder("vars", "demo", "dev", "app", root=demo_root)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("vars/demo/dev/app.yml:1: ami_keep: must be a whole number ≥ 1, "
                             "not 'lots'")
    assert "Traceback" not in done.stderr


def test_verbose_shows_the_traceback(demo_root: Path) -> None:
    done = run_builder("-v", "vars", "demo", "nope", "app", root=demo_root)
    assert done.returncode == 2
    assert "Traceback" in done.stderr
    assert "unknown env 'nope'" in done.stderr


def test_root_is_found_upward_and_by_env(demo_root: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    deep = demo_root / "playbooks" / "demo"
    done = subprocess.run([sys.executable, "-m", "builder", "vars", "demo", "dev", "app", "--json"],
                          cwd=deep, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    nowhere = run_builder("vars", "demo", "dev", "app", env={"BUILDER_ROOT": str(tmp_path)})
    assert nowhere.returncode == 2
    assert "not an infra repo" in nowhere.stderr


def test_every_command_has_help() -> None:
    import typer.main

    group = typer.main.get_command(app)
    commands = group.commands  # type: ignore[attr-defined]
    for name, command in commands.items():
        assert command.help, name
        for sub_name, sub in getattr(command, "commands", {}).items():
            assert sub.help, f"{name} {sub_name}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["bake", "demo", "dev", "app", "--local"], ["--local", "bake", "demo", "dev", "app"]),
        (["vars", "a", "b", "c", "-e", "x=1", "--json"], ["-e", "x=1", "--json", "vars", "a", "b",
                                                          "c"]),
        (["vars", "--root=/r", "a"], ["--root=/r", "vars", "a"]),
        (["release", "--", "--local"], ["release", "--", "--local"]),
    ],
)
def test_global_options_are_hoisted(args: list[str], expected: list[str]) -> None:
    assert hoist_globals(args) == expected


def test_a_global_option_without_its_value_is_a_usage_error(cli: Any) -> None:
    # Hoisted in front of the command it would otherwise take `vars` as its value.
    result = cli("vars", "demo", "dev", "app", "--root")
    assert result.exit_code == 2
    assert "Invalid value for '--root': a value is required" in result.output
