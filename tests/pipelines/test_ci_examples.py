"""The CI examples in the repo parse, have the shape their comments promise, and run
only `builder` commands and flags that exist (checked against the CLI's command tree)."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.pipelines.due import Action
from tests.pipelines.conftest import check_builder_command

REPO = Path(__file__).resolve().parents[2]
NIGHTLY = REPO / ".github" / "workflows" / "nightly-rebuild.yml"
PROMOTE_WORKFLOW = REPO / ".github" / "workflows" / "promote.yml"
BUILDSPEC = REPO / "ci" / "codebuild" / "buildspec.yml"
# Where a shell command ends.
_SEPARATORS = {";", "&&", "||", "|", "&", ">", ">>", "<", "2>", ")", "("}


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), path
    return document


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    found = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert isinstance(found, dict)
    return found


def scripts(path: Path) -> Iterator[str]:
    document = load(path)
    if "jobs" in document:
        for job in document["jobs"].values():
            yield from (step["run"] for step in job["steps"] if "run" in step)
    else:
        for phase in document["phases"].values():
            yield from phase.get("commands", [])


def builder_commands(script: str) -> Iterator[list[str]]:
    """The argv after `builder` of every builder command in a shell script; shell
    variables and expressions stand in as "1" (a valid value for any option)."""
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        for start, token in enumerate(tokens):
            if token != "builder":
                continue
            argv: list[str] = []
            for arg in tokens[start + 1:]:
                if arg in _SEPARATORS:
                    break
                argv.append("1" if "$" in arg else arg)
            yield argv


@pytest.mark.parametrize("path", [NIGHTLY, PROMOTE_WORKFLOW, BUILDSPEC],
                         ids=lambda p: p.name)
def test_every_builder_command_in_the_ci_examples_exists(path: Path) -> None:
    found = [argv for script in scripts(path) for argv in builder_commands(script)]
    assert found, f"{path.name} runs no builder command"
    for argv in found:
        check_builder_command(argv)


def test_the_nightly_workflow_fans_the_rebuild_plan_out() -> None:
    workflow = load(NIGHTLY)
    assert triggers(workflow)["schedule"][0]["cron"]
    jobs = workflow["jobs"]
    plan_script = "\n".join(s["run"] for s in jobs["plan"]["steps"] if "run" in s)
    plan = next(argv for argv in builder_commands(plan_script) if argv[0] == "rebuild")
    assert {"--dry-run", "--json"} <= set(plan)
    for job, action in (("bake", Action.BAKE), ("promote", Action.PROMOTE)):
        assert f'select(.action == "{action}")' in plan_script
        assert set(jobs["plan"]["outputs"]) == {"bakes", "promotions"}
        matrix = jobs[job]["strategy"]["matrix"]["include"]
        assert matrix.startswith("${{ fromJSON(needs.plan.outputs.")
        runs = [s for s in jobs[job]["steps"] if "run" in s]
        assert any(s.get("env", {}).get("COMMAND") == "${{ matrix.command }}"
                   and "$COMMAND" in s["run"] for s in runs), job
    assert "bake" in jobs["promote"]["needs"]
    assert jobs["promote"]["environment"] == "production"


def test_the_promote_workflow_is_manual_and_protected() -> None:
    workflow = load(PROMOTE_WORKFLOW)
    inputs = triggers(workflow)["workflow_dispatch"]["inputs"]
    assert {"app", "comp", "to", "ami"} <= set(inputs)
    job = workflow["jobs"]["promote"]
    assert job["environment"] == "production"
    commands = [argv for s in job["steps"] if "run" in s for argv in builder_commands(s["run"])]
    promotions = [argv for argv in commands if argv[0] == "promote"]
    assert len(promotions) == 2 and sum("--ami" in argv for argv in promotions) == 1


def test_the_buildspec_runs_the_rebuild() -> None:
    buildspec = load(BUILDSPEC)
    assert str(buildspec["version"]) == "0.2"
    commands = [argv for script in scripts(BUILDSPEC) for argv in builder_commands(script)]
    assert ["rebuild", "--release", "--dry-run", "--json"] in commands
    assert any(argv[:2] == ["rebuild", "--release"] and "--dry-run" not in argv
               for argv in commands)
    assert set(buildspec["artifacts"]["files"]) == {"plan.json", "rebuild.json", "status.json"}
