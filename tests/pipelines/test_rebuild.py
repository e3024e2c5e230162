"""`builder rebuild`: the plan after a newer base image, changed inputs, an old AMI; a
verified staging AMI planned and run as a promotion; AWS calls per account and region."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from builder.config.models import Combo
from builder.local.mode import LOCAL
from builder.pipelines.rebuild import plan
from builder.project import Project
from builder.release.release import release
from tests.pipelines.conftest import bake_like, check_builder_command

pytestmark = pytest.mark.local

BAKED_HERE = [Combo("demo", "dev", "app"), Combo("demo", "dev", "worker"),
              Combo("demo", "staging", "app"), Combo("demo", "staging", "worker"),
              Combo("shop", "live", "web")]


@pytest.fixture(scope="module")
def project(local_stack: Project) -> Project:
    """The demo root plus a second app in another account and region (us-east-1), so a
    newer base image in eu-west-1 affects some combos and not others."""
    from builder.local import stack

    add_shop_app(local_stack.root)
    stack.up(local_stack, build_host=False)  # the new app's resources, as Terraform would
    return Project.open(str(local_stack.root), local_mode=LOCAL)


def add_shop_app(root: Path) -> None:
    (root / "vars" / "shop" / "common").mkdir(parents=True)
    (root / "vars" / "shop" / "common" / "common.yml").write_text(
        (root / "vars" / "demo" / "common" / "common.yml").read_text())
    (root / "vars" / "shop" / "live").mkdir()
    (root / "vars" / "shop" / "live" / "common.yml").write_text(
        "components: [web]\naws_region: us-east-1\naws_account_id: '444444444444'\n")
    (root / "playbooks" / "shop").mkdir()
    (root / "playbooks" / "shop" / "packer-web.yml").write_text(
        "- hosts: all\n  tasks:\n    - ansible.builtin.debug: msg=web\n")


def dry_run(cli: Any, project: Project, *args: str) -> dict[str, dict[str, Any]]:
    done = cli("--local", "rebuild", *args, "--dry-run", "--json", root=project.root)
    assert done.exit_code == 0, done.output
    entries = json.loads(done.stdout)
    assert all(set(e) == {"app", "env", "comp", "action", "reason", "command"} for e in entries)
    for entry in entries:  # what a CI job runs for it is a real command
        if entry["command"] is not None:
            argv = shlex.split(entry["command"])
            assert argv[0] == "builder"
            check_builder_command(argv[1:])
    return {f"{e['app']}/{e['env']}/{e['comp']}": e for e in entries}


def test_a_newer_base_image_plans_exactly_the_comps_built_on_the_old_one(
        project: Project, cli: Any) -> None:
    baked = {str(combo): bake_like(project, combo) for combo in BAKED_HERE}
    before = dry_run(cli, project)
    assert set(before) == {*baked, "demo/prod/app", "demo/prod/worker"}
    for name, image in baked.items():
        assert before[name]["action"] == "skip"
        assert before[name]["reason"].startswith(f"up to date: {image.id}")
        assert before[name]["command"] is None

    published = cli("--local", "local", "publish-source-ami", "demo", "dev", "--json",
                    root=project.root)
    assert published.exit_code == 0, published.output
    new_base = json.loads(published.stdout)["images"][0]
    after = dry_run(cli, project)
    affected = {name for name, entry in after.items() if entry["action"] == "bake"}
    assert affected == {"demo/dev/app", "demo/dev/worker", "demo/staging/app",
                        "demo/staging/worker"}  # eu-west-1; shop is in us-east-1
    for name in affected:
        old_base = baked[name].source_ami
        assert after[name]["reason"] == (f"newer base image {new_base['image_id']} "
                                         f"({new_base['name']}) than {old_base}")
        app, env, comp = name.split("/")
        assert after[name]["command"] == f"builder bake {app} {env} {comp}"
    assert after["shop/live/web"]["action"] == "skip"
    # prod takes staging's verified AMIs; nothing there is verified yet.
    assert {after[f"demo/prod/{comp}"]["action"] for comp in ("app", "worker")} == {"skip"}
    assert after["demo/prod/app"]["reason"].startswith("staging runs no verified AMI")


def test_changed_inputs_are_named_and_an_old_ami_is_rebaked(project: Project,
                                                             cli: Any) -> None:
    current = bake_like(project, Combo("demo", "dev", "app"))
    old = bake_like(project, Combo("shop", "live", "web"),
                    built_at=datetime.now(UTC) - timedelta(days=40))

    changed = dry_run(cli, project, "demo", "--env", "dev", "-e", "app_log_level=warning")
    assert set(changed) == {"demo/dev/app", "demo/dev/worker"}
    assert changed["demo/dev/app"]["action"] == "bake"
    assert changed["demo/dev/app"]["reason"] == f"changed since {current.id}: vars"

    aged = dry_run(cli, project, "shop", "--release")["shop/live/web"]
    assert aged["action"] == "bake"
    assert aged["reason"] == f"{old.id} is 40 days old (rebuild_max_age_days 30)"
    # Its fingerprint still matches: the bake must be forced.
    assert shlex.split(aged["command"]) == ["builder", "bake", "shop", "live", "web",
                                            "--force", "--release"]


def test_prod_promotes_what_staging_verified_and_rebuild_runs_it(project: Project,
                                                                  cli: Any) -> None:
    worker = Combo("demo", "staging", "worker")
    source = bake_like(project, worker)
    assert release(project, worker, ami_id=source.id).outcome == "verified"

    planned = dry_run(cli, project, "demo", "--env", "prod")["demo/prod/worker"]
    assert planned["action"] == "promote"
    assert planned["reason"].startswith(f"staging runs a newer verified AMI {source.id} than ami-")
    assert planned["command"] == "builder promote demo worker --to prod --no-deploy"
    with_release = dry_run(cli, project, "demo", "--env", "prod", "--release")
    assert with_release["demo/prod/worker"]["command"] == "builder promote demo worker --to prod"

    done = cli("--local", "rebuild", "demo", "--env", "prod", "--release", "--json",
               root=project.root)
    assert done.exit_code == 0, done.output
    ran = {f"{e['app']}/{e['env']}/{e['comp']}": e for e in json.loads(done.stdout)}
    assert ran["demo/prod/worker"]["result"] == "done"
    assert ran["demo/prod/worker"]["detail"] == (f"copied staging/{source.id}, "
                                                 "release verified")
    copy = ran["demo/prod/worker"]["ami_id"]

    settled = dry_run(cli, project, "demo", "--env", "prod")["demo/prod/worker"]
    assert settled["action"] == "skip"
    assert settled["reason"] == f"runs {copy}, the copy of staging's verified {source.id}"


def test_the_plan_queries_aws_per_account_and_region_not_per_combo(project: Project) -> None:
    fresh = Project.open(str(project.root), local_mode=LOCAL)  # its own call count
    entries = plan(fresh)
    assert len(entries) == 7
    calls = fresh.aws.call_log.counts
    places = 4  # dev, staging (eu-west-1), prod (eu-central-1), shop (us-east-1)
    assert calls["sts.AssumeRole"] == places
    assert calls["sts.GetCallerIdentity"] == places  # the account check, once per account
    assert calls["ec2.DescribeLaunchTemplateVersions"] == places
    # builder's AMIs and the base images: one each per place (one filter owner set);
    # the running AMIs that aren't builder's (Terraform's) at most one more per place.
    assert 2 * places <= calls["ec2.DescribeImages"] <= 3 * places
    assert fresh.aws.call_log.total() == sum(calls[name] for name in (
        "sts.AssumeRole", "sts.GetCallerIdentity", "ec2.DescribeLaunchTemplateVersions",
        "ec2.DescribeImages"))
