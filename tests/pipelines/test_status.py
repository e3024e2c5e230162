"""`builder status`: what each comp runs, how old, from which base image, whether a
rebuild is due and why, the last deployment, the lineage of promoted copies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from builder.config.models import Combo
from builder.pipelines.promote import promote
from builder.project import Project
from builder.release.release import release
from tests.pipelines.conftest import bake_like

pytestmark = pytest.mark.local


def status_json(cli: Any, project: Project, *args: str) -> dict[str, dict[str, Any]]:
    done = cli("--local", "status", *args, "--json", root=project.root)
    assert done.exit_code == 0, done.output
    return {f"{c['app']}/{c['env']}/{c['comp']}": c for c in json.loads(done.stdout)["combos"]}


def test_status_shows_the_running_ami_and_when_a_rebuild_is_due(local_stack: Project,
                                                                  cli: Any) -> None:
    app = Combo("demo", "dev", "app")
    image = bake_like(local_stack, app)
    released = release(local_stack, app, ami_id=image.id)

    dev = status_json(cli, local_stack, "demo", "--env", "dev")
    assert set(dev) == {"demo/dev/app", "demo/dev/worker"}
    shown = dev["demo/dev/app"]
    assert (shown["ami_id"], shown["status"], shown["base_ami"]) == (
        image.id, "verified", image.source_ami)
    assert (shown["rebuild_due"], shown["due"], shown["newer_base_ami"]) == (False, "skip", None)
    assert shown["last_deployment"]["id"] == released.deployment_id
    assert shown["last_deployment"]["status"] == "Succeeded"
    assert shown["age_days"] < 0.1 and shown["promoted_from"] is None
    # worker still runs the image Terraform put on its template.
    worker = dev["demo/dev/worker"]
    assert (worker["rebuild_due"], worker["reasons"], worker["status"]) == (
        True, ["no AMI yet"], None)
    assert worker["last_deployment"]["status"] == "Succeeded"  # Terraform's first one

    published = cli("--local", "local", "publish-source-ami", "demo", "dev", "--json",
                    root=local_stack.root)
    new_base = json.loads(published.stdout)["images"][0]["image_id"]
    text = cli("--local", "status", "demo", "--env", "dev", root=local_stack.root)
    assert text.exit_code == 0, text.output
    row = next(line for line in text.stdout.splitlines() if line.startswith("demo/dev/app "))
    assert f"{image.source_ami} (newer: {new_base})" in row
    assert f"rebuild due: newer base image {new_base}" in row
    assert f"Succeeded {released.deployment_id}" in row
    assert "2 combos, 2 due" in text.stdout


def test_status_shows_an_old_ami_and_a_promoted_copy(local_stack: Project, cli: Any) -> None:
    worker = Combo("demo", "staging", "worker")
    old = bake_like(local_stack, worker, built_at=datetime.now(UTC) - timedelta(days=45))
    release(local_stack, worker, ami_id=old.id)
    copy = promote(local_stack, "demo", "worker", "prod").ami_id

    shown = status_json(cli, local_stack, "demo")
    staging = shown["demo/staging/worker"]
    assert staging["ami_id"] == old.id and round(staging["age_days"]) == 45
    assert staging["reasons"] == [f"{old.id} is 45 days old (rebuild_max_age_days 30)"]
    prod = shown["demo/prod/worker"]
    assert (prod["ami_id"], prod["status"], prod["promoted_from"]) == (
        copy, "verified", f"staging/{old.id}")
    assert (prod["rebuild_due"], prod["reasons"]) == (
        False, [f"runs {copy}, the copy of staging's verified {old.id}"])
    assert round(prod["age_days"]) == 45  # the copy carries its bake time
