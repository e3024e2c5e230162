"""`builder prune`: old AMIs go with their snapshots; nothing in use does — launch
template versions (of the comp's template or any template's default), Auto Scaling
groups and instances, a deployment in progress, a share with another account."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from builder.aws import images as amis
from builder.config.models import Combo
from builder.local.mode import LOCAL
from builder.local.stack import hold_deployments
from builder.pipelines.prune import prune
from builder.project import Project
from builder.release.release import release
from tests.pipelines.conftest import bake_like, ec2_of

pytestmark = pytest.mark.local

# prod: its AMIs are under a customer-managed key, so they can be shared; its groups
# copy their ASG (blue_green_copy).
WORKER = Combo("demo", "prod", "worker")


def test_prune_keeps_every_ami_in_use_and_deletes_the_rest(local_stack: Project,
                                                           cli: Any) -> None:
    ec2 = ec2_of(local_stack, WORKER)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    (unused_old, unused, in_template, in_asg, shared, on_instance, other_template,
     deploying) = [bake_like(local_stack, WORKER, created=an_hour_ago) for _ in range(8)]
    newest = bake_like(local_stack, WORKER, created=an_hour_ago + timedelta(minutes=1))
    template = ec2.describe_launch_templates(
        LaunchTemplateNames=["demo-prod-worker"])["LaunchTemplates"][0]["LaunchTemplateId"]
    # An older version of the comp's template (not the default) launches one.
    ec2.create_launch_template_version(LaunchTemplateId=template, SourceVersion="$Default",
                                       LaunchTemplateData={"ImageId": in_template.id})
    # A release: the template's default and the group's new ASG (and its instances).
    assert release(local_stack, WORKER, ami_id=in_asg.id).outcome == "verified"
    ec2.modify_image_attribute(ImageId=shared.id,
                               LaunchPermission={"Add": [{"UserId": "222222222222"}]})
    instance = ec2.run_instances(ImageId=on_instance.id, MinCount=1, MaxCount=1,
                                 InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    ec2.create_launch_template(LaunchTemplateName="batch-jobs",
                               LaunchTemplateData={"ImageId": other_template.id})
    # A release whose deployment is still going when prune looks.
    hold_deployments(local_stack, WORKER.app, WORKER.env, WORKER.comp, "InProgress")
    running = release(local_stack, WORKER, ami_id=deploying.id, wait=False)
    assert running.outcome == "deploying"

    planned = cli("--local", "prune", "demo", "prod", "worker", "--keep", "1", "--json",
                  root=local_stack.root)
    assert planned.exit_code == 0, planned.output
    shown = json.loads(planned.stdout)
    assert (shown["dry_run"], shown["keep_newest"]) == (True, 1)
    entries = {e["ami_id"]: e for e in shown["amis"]}
    assert {i for i, e in entries.items() if e["action"] == "delete"} == {
        unused_old.id, unused.id}

    def why(image: amis.Image) -> str:
        entry = entries[image.id]
        assert entry["action"] == "keep", entry
        return "; ".join(entry["reasons"])

    assert why(newest) == "one of the newest 1"
    assert "launch template demo-prod-worker version 2" in why(in_template)
    assert "Auto Scaling group CodeDeploy_demo-prod-worker_" in why(in_asg)
    assert "instance i-" in why(in_asg)  # the new group's instances run it
    assert why(shared) == "shared with 222222222222"
    assert why(on_instance) == f"instance {instance} runs it"
    assert why(other_template) == "launch template batch-jobs version 1 (default)"
    assert f"deployment {running.deployment_id} in progress" in why(deploying)
    assert "(default)" in why(deploying)
    # A dry run: still there.
    assert len(amis.describe(ec2, image_ids=list(entries))) == 9

    done = cli("--local", "prune", "demo", "prod", "worker", "--keep", "1", "--yes", "--json",
               root=local_stack.root)
    assert done.exit_code == 0, done.output
    actions = {e["ami_id"]: e["action"] for e in json.loads(done.stdout)["amis"]}
    assert {i for i, a in actions.items() if a == "deleted"} == {unused_old.id, unused.id}
    left = {i.id for i in amis.images_of(ec2, WORKER)}
    assert left == {in_template.id, in_asg.id, shared.id, on_instance.id, other_template.id,
                    deploying.id, newest.id}
    gone = [*unused_old.snapshot_ids, *unused.snapshot_ids]
    remaining = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert gone and not set(gone) & remaining
    assert set(newest.snapshot_ids) <= remaining
    hold_deployments(local_stack, WORKER.app, WORKER.env, WORKER.comp, None)


def test_ami_keep_is_the_default_and_the_plan_is_shown(local_stack: Project,
                                                       cli: Any) -> None:
    app = Combo("demo", "prod", "app")  # ami_keep: 10 in vars/demo/prod/common.yml
    made = [bake_like(local_stack, app) for _ in range(3)]
    shown = cli("--local", "prune", "demo", "prod", "app", root=local_stack.root)
    assert shown.exit_code == 0, shown.output
    assert "keeping the newest 10 and everything in use" in shown.stdout
    assert "nothing to prune" in shown.stdout
    assert all(f"{image.id}" in shown.stdout for image in made)


def test_an_ami_that_failed_takes_no_place_among_the_newest(local_stack: Project) -> None:
    worker = Combo("demo", "dev", "worker")
    ec2 = ec2_of(local_stack, worker)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    older = bake_like(local_stack, worker, created=an_hour_ago)
    newest = bake_like(local_stack, worker, created=an_hour_ago + timedelta(minutes=1))
    # A copy EC2 accepted and then failed (a key it can't use), tagged for the comp: the
    # newest image, made now.
    failed_id = ec2.copy_image(SourceImageId=newest.id, SourceRegion="eu-west-1",
                               Name="demo-dev-worker-failed-copy", Encrypted=True,
                               KmsKeyId="alias/no-such-key")["ImageId"]
    [failed] = amis.describe(ec2, image_ids=[failed_id])
    assert failed.state == "failed"
    amis.set_tags(ec2, failed, {amis.TAG_APP: "demo", amis.TAG_ENV: "dev",
                                amis.TAG_COMP: "worker", amis.TAG_STATUS: amis.AmiStatus.BAKED})

    report = prune(local_stack, "demo", "dev", "worker", keep=1)

    assert {e.image.id: e.action for e in report.entries} == {
        failed_id: "delete", newest.id: "keep", older.id: "delete"}


def test_an_ami_only_a_mixed_instances_override_launches_is_kept(local_stack: Project) -> None:
    app = Combo("demo", "dev", "app")
    ec2 = ec2_of(local_stack, app)
    autoscaling = local_stack.env_aws(local_stack.resolve("demo", "dev", "app")).client(
        "autoscaling")
    old, current = bake_like(local_stack, app), bake_like(local_stack, app)
    template = ec2.create_launch_template(
        LaunchTemplateName="spot-fleet", LaunchTemplateData={"ImageId": old.id},
    )["LaunchTemplate"]["LaunchTemplateId"]
    ec2.create_launch_template_version(LaunchTemplateId=template, SourceVersion="1",
                                       LaunchTemplateData={"ImageId": current.id})
    ec2.modify_launch_template(LaunchTemplateId=template, DefaultVersion="2")
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    # Version 1 (the old AMI) is neither the default nor the latest: only the override
    # of the group's mixed instances policy still launches it.
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="spot-fleet", MinSize=0, MaxSize=1, DesiredCapacity=0,
        VPCZoneIdentifier=subnets["Subnets"][0]["SubnetId"],
        MixedInstancesPolicy={"LaunchTemplate": {
            "LaunchTemplateSpecification": {"LaunchTemplateId": template, "Version": "2"},
            "Overrides": [{"InstanceType": "t3.small", "LaunchTemplateSpecification": {
                "LaunchTemplateId": template, "Version": "1"}}]}})

    report = prune(local_stack, "demo", "dev", "app", keep=1)

    reasons = {e.image.id: e.reasons for e in report.entries}
    assert "Auto Scaling group spot-fleet launches it" in reasons[old.id]


def test_prune_keeps_amis_ssm_parameters_name_and_recently_launched_ones(
        local_stack: Project, cli: Any) -> None:
    worker = Combo("demo", "prod", "worker")
    resolved = local_stack.resolve("demo", "prod", "worker")
    ec2, ssm = ec2_of(local_stack, worker), local_stack.env_aws(resolved).client("ssm")
    a_month_ago = datetime.now(UTC) - timedelta(days=30)
    named, listed, launched, unused = [bake_like(local_stack, worker, created=a_month_ago)
                                       for _ in range(4)]
    newest = bake_like(local_stack, worker)
    # Another team's parameters: a plain one, and a list among other values.
    ssm.put_parameter(Name="/team/other/ami", Value=named.id, Type="String")
    ssm.put_parameter(Name="fleet-amis", Type="StringList",
                      Value=f"ami-0123456789abcdef0,{listed.id}")
    ssm.put_parameter(Name="/team/other/note", Value="not an AMI", Type="String")
    # Launched once, by someone builder can't see; the instance is gone since.
    instance = ec2.run_instances(ImageId=launched.id, MinCount=1, MaxCount=1,
                                 InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    ec2.terminate_instances(InstanceIds=[instance])

    planned = cli("--local", "prune", "demo", "prod", "worker", "--keep", "1", "--json",
                  root=local_stack.root)
    assert planned.exit_code == 0, planned.output
    own = {image.id for image in (named, listed, launched, unused, newest)}
    # (Other tests of this module leave AMIs of the comp that are in use: not compared.)
    entries = {e["ami_id"]: e for e in json.loads(planned.stdout)["amis"] if e["ami_id"] in own}
    assert {i: (e["action"], e["why"]) for i, e in entries.items()} == {
        newest.id: ("keep", "one of the newest 1"),
        named.id: ("keep", "SSM /team/other/ami"),
        listed.id: ("keep", "SSM fleet-amis"),
        launched.id: ("keep", "launched today"),
        unused.id: ("delete", None)}
    assert entries[launched.id]["last_launched"] is not None
    shown = cli("--local", "prune", "demo", "prod", "worker", "--keep", "1",
                root=local_stack.root)
    assert "SSM /team/other/ami" in shown.stdout and "launched today" in shown.stdout

    # ami_keep_launched_days 0: a launch keeps nothing; what SSM names still stays.
    no_grace = Project.open(str(local_stack.root), local_mode=LOCAL,
                            overrides={"ami_keep_launched_days": "0"})
    report = prune(no_grace, "demo", "prod", "worker", keep=1, yes=True)
    assert {e.image.id: e.action for e in report.entries if e.image.id in own} == {
        newest.id: "keep", named.id: "keep", listed.id: "keep", launched.id: "deleted",
        unused.id: "deleted"}
    for name in ("/team/other/ami", "fleet-amis", "/team/other/note"):
        ssm.delete_parameter(Name=name)


def test_protected_amis_in_use_survive_prune_and_unused_ones_are_unprotected_and_go(
        local_stack: Project, cli: Any) -> None:
    app = Combo("demo", "staging", "app")
    ec2 = ec2_of(local_stack, app)
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    stale, released = [bake_like(local_stack, app, created=two_hours_ago) for _ in range(2)]
    newest = bake_like(local_stack, app)
    # A protected AMI nothing uses any more (its launch template version is gone).
    ec2.enable_image_deregistration_protection(ImageId=stale.id, WithCooldown=False)
    done = release(local_stack, app, ami_id=released.id)
    assert done.outcome == "verified" and done.protected

    pruned = cli("--local", "prune", "demo", "staging", "app", "--keep", "1", "--yes",
                 "--json", root=local_stack.root)

    assert pruned.exit_code == 0, pruned.output
    entries = {e["ami_id"]: e for e in json.loads(pruned.stdout)["amis"]}
    assert (entries[stale.id]["action"], entries[stale.id]["protected"]) == ("deleted", True)
    kept = entries[released.id]
    assert (kept["action"], kept["protected"]) == ("keep", True)
    assert kept["why"] == (f"protected and in use: launch template demo-staging-app version "
                           f"{done.new_version} (default)")
    assert entries[newest.id]["why"] == "one of the newest 1"
    left = {i.id: i for i in amis.images_of(ec2, app)}
    assert set(left) == {released.id, newest.id}
    assert left[released.id].protected


def test_prune_reads_every_ssm_parameter_in_few_calls_and_launch_times_in_none(
        local_stack: Project) -> None:
    app = Combo("demo", "dev", "app")
    resolved = local_stack.resolve("demo", "dev", "app")
    ssm = local_stack.env_aws(resolved).client("ssm")
    made = [bake_like(local_stack, app) for _ in range(3)]
    names = [f"/bulk/{n:02d}" for n in range(23)]
    for name in names:
        ssm.put_parameter(Name=name, Value=made[0].id, Type="String")
    fresh = Project.open(str(local_stack.root), local_mode=LOCAL)

    report = prune(fresh, "demo", "dev", "app", keep=1)

    counts = fresh.aws.call_log.counts
    print(dict(counts))
    # 23 parameters (and those other tests left): names 50 a page, values 10 a call.
    assert counts["ssm.DescribeParameters"] == 1
    assert counts["ssm.GetParameters"] == 3
    # When an AMI was last launched comes with DescribeImages: no call per AMI for it.
    assert counts["ec2.DescribeImages"] == 1
    entry = next(e for e in report.entries if e.image.id == made[0].id)
    assert f"SSM {names[0]}" in entry.reasons and len(entry.reasons) >= 23
    for name in names:
        ssm.delete_parameter(Name=name)
