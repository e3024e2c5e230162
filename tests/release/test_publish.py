"""What a release publishes besides the launch template: deregistration protection on
the AMI it makes the default and `ami_ssm_parameter` on a verified release; both
undone by a rollback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from builder.config.models import Combo
from builder.errors import DeployFailed
from builder.local.mode import LOCAL
from builder.local.resources import revision_bundle
from builder.local.stack import fail_next_deployment
from builder.project import Project
from builder.release.release import release
from tests.release.emulated import Lines, make_ami

pytestmark = pytest.mark.local

DEV_APP = Combo("demo", "dev", "app")
STAGING_APP = Combo("demo", "staging", "app")
PARAMETER = "/builder/{{ app }}/{{ env }}/{{ comp }}/ami"


def publishing(project: Project) -> Project:
    return Project.open(str(project.root), local_mode=LOCAL,
                        overrides={"ami_ssm_parameter": PARAMETER})


def clients(project: Project, combo: Combo) -> tuple[Any, Any]:
    env_aws = project.env_aws(project.resolve(combo.app, combo.env, combo.comp))
    return env_aws.client("ec2"), env_aws.client("ssm")


def protection(ec2: Any, ami_id: str) -> str:
    found: str = ec2.describe_images(ImageIds=[ami_id])["Images"][0]["DeregistrationProtection"]
    return found


def value(ssm: Any, name: str) -> str | None:
    try:
        found: str = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return None
    return found


def new_revision(project: Project, combo: Combo, key: str) -> str:
    """Another revision in the env's bucket: a release of the same AMI deploys again."""
    settings = project.resolve(combo.app, combo.env, combo.comp).settings
    bucket = f"demo-{combo.env}-codedeploy-{settings.aws_account_id}"
    project.env_aws(project.resolve(combo.app, combo.env, combo.comp)).client(
        "s3").put_object(Bucket=bucket, Key=key, Body=revision_bundle())
    return f"s3://{bucket}/{key}"


def test_a_verified_release_publishes_and_protects_and_a_rollback_undoes_it(
        local_stack: Project) -> None:
    project = publishing(local_stack)
    ec2, ssm = clients(project, DEV_APP)
    name = "/builder/demo/dev/app/ami"
    first, second = make_ami(project, DEV_APP), make_ami(project, DEV_APP)

    verified = release(project, DEV_APP, ami_id=first, progress=Lines())

    assert verified.outcome == "verified" and verified.protected
    assert value(ssm, name) == first
    assert protection(ec2, first) == "enabled-without-cooldown"
    shown = verified.to_json()
    assert shown["ssm_parameter"] == {"name": name, "value": first, "previous": None,
                                      "changed": True}
    assert shown["protected"] is True
    assert f"SSM parameter {name}: {first} (was unset)" in verified.to_text()
    assert f"{first}: deregistration protection on" in verified.to_text()

    # A new AMI whose deployment fails: the parameter keeps the AMI the group runs, the
    # failed AMI loses the protection the release gave it, and the previous one (its
    # protection taken off meanwhile, by hand) is protected again.
    ec2.disable_image_deregistration_protection(ImageId=first)
    fail_next_deployment(project, "demo", "dev", "app")
    with pytest.raises(DeployFailed) as failed:
        release(project, DEV_APP, ami_id=second, progress=Lines())
    assert f"{second}'s deregistration protection removed" in failed.value.message
    assert f"{first} (the default again) protected" in failed.value.message
    assert value(ssm, name) == first
    assert protection(ec2, second) == "disabled"
    assert protection(ec2, first) == "enabled-without-cooldown"
    record = sorted((project.root / ".builder/releases/demo/dev/app").glob("*.json"))[-1]
    assert json.loads(record.read_text())["ssm_parameter"] is None

    # The second AMI verified, then deployed again (another revision) and rolled back:
    # the parameter goes back to the AMI the default went back to.
    assert release(project, DEV_APP, ami_id=second, progress=Lines()).publication is not None
    assert value(ssm, name) == second
    fail_next_deployment(project, "demo", "dev", "app")
    with pytest.raises(DeployFailed) as rolled_back:
        release(project, DEV_APP, ami_id=second, progress=Lines(),
                revision=new_revision(project, DEV_APP, "app/v3.zip"))
    assert f"SSM parameter {name} back to {first}" in rolled_back.value.message
    assert value(ssm, name) == first
    assert protection(ec2, first) == "enabled-without-cooldown"


def test_a_rolled_back_release_deletes_a_parameter_it_alone_had_set(local_stack: Project
                                                                    ) -> None:
    project = publishing(local_stack)
    ec2, ssm = clients(project, STAGING_APP)
    name = "/builder/demo/staging/app/ami"
    ami = make_ami(project, STAGING_APP)
    assert release(project, STAGING_APP, ami_id=ami, progress=Lines()).outcome == "verified"
    assert value(ssm, name) == ami
    # Released again, unchanged: the parameter is left as it is.
    again = release(project, STAGING_APP, ami_id=ami, progress=Lines())
    assert again.outcome == "unchanged" and again.publication is not None
    assert not again.publication.changed

    fail_next_deployment(project, "demo", "staging", "app")
    with pytest.raises(DeployFailed) as failed:
        release(project, STAGING_APP, ami_id=ami, progress=Lines(),
                revision=new_revision(project, STAGING_APP, "app/v9.zip"))

    assert f"SSM parameter {name} deleted" in failed.value.message
    assert value(ssm, name) is None
    # Protected by the earlier release, not this one: it stays so (prune takes it off
    # when the AMI goes).
    assert protection(ec2, ami) == "enabled-without-cooldown"


def test_protect_released_false_leaves_the_ami_unprotected(local_stack: Project) -> None:
    project = Project.open(str(local_stack.root), local_mode=LOCAL,
                           overrides={"protect_released": "false"})
    ec2, _ = clients(project, Combo("demo", "prod", "app"))
    ami = make_ami(project, Combo("demo", "prod", "app"))

    done = release(project, Combo("demo", "prod", "app"), ami_id=ami, progress=Lines())

    assert done.outcome == "verified" and not done.protected
    assert protection(ec2, ami) == "disabled"
