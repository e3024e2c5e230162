"""What the user's Terraform would have made, made in the emulator for every (app, env,
comp) under the root; and a newer base image on request (what a vendor's OS updates do).

Every resource is made through builder.aws, inside the env's own account (assume-role),
except the base images: they belong to the filter's owner (a vendor account such as
Canonical's 099720109477) which no env can act as, so the emulator's control route
publishes them there, public, as vendors do.

Idempotent: what exists is left alone (found by name), what is missing is made.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from builder.aws import EnvAws, codedeploy, images, translate
from builder.aws.calls import runs
from builder.aws.images import Image, describe
from builder.aws.partition import arn
from builder.config.layers import ResolvedVars
from builder.config.models import DeployStrategy, Settings
from builder.errors import AwsError, BuilderError, InputError, Problem
from builder.local import buildhost, control
from builder.local.mode import local_project
from builder.output import ProgressFn, silent, table
from builder.polling import poll_until
from builder.redact import remember

if TYPE_CHECKING:
    from mypy_boto3_ec2.literals import InstanceTypeType
    from mypy_boto3_ec2.type_defs import FilterTypeDef
    from mypy_boto3_s3.literals import BucketLocationConstraintType

    from builder.project import Project

VAULT_PASSWORD_FILE_ENV = "BUILDER_LOCAL_VAULT_PASSWORD_FILE"  # noqa: S105 - a variable's name
DEPLOYMENT_TIMEOUT_SECONDS = 120.0
APPSPEC = "version: 0.0\nos: linux\n"


@dataclass(frozen=True)
class Resource:
    """One pre-made resource; `made` is false when it was already there."""

    account: str
    region: str
    kind: str
    name: str
    made: bool

    def to_json(self) -> dict[str, Any]:
        return {"account": self.account, "region": self.region, "kind": self.kind,
                "name": self.name, "made": self.made}


@dataclass(frozen=True)
class ResourcesReport:
    """What `local up` made or found, and what it could not make."""

    resources: tuple[Resource, ...]
    problems: tuple[str, ...] = ()

    exit_code = 0

    @property
    def made(self) -> list[Resource]:
        return [r for r in self.resources if r.made]

    def to_json(self) -> dict[str, Any]:
        return {"resources": [r.to_json() for r in self.resources],
                "made": len(self.made), "problems": list(self.problems)}

    def to_text(self) -> str:
        lines = [f"resources: {len(self.made)} made, "
                 f"{len(self.resources) - len(self.made)} already there"]
        lines += [f"problem: {problem}" for problem in self.problems]
        return "\n".join(lines)


@dataclass(frozen=True)
class PublishedImage:
    """A newer base image published by `local publish-source-ami`."""

    image_id: str
    name: str
    owner: str
    region: str
    created: datetime
    previous: str | None  # the newest match before this one
    package: str = ""  # NAME=VERSION installed in its build host layer (--with-package)

    def to_json(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "name": self.name, "owner": self.owner,
                "region": self.region, "creation_date": self.created.isoformat(),
                "previous": self.previous, "package": self.package or None}


@dataclass(frozen=True)
class PublishedImages:
    """`builder local publish-source-ami`: one new image per distinct filter of the env."""

    images: tuple[PublishedImage, ...]

    exit_code = 0

    def to_json(self) -> dict[str, Any]:
        return {"images": [image.to_json() for image in self.images]}

    def to_text(self) -> str:
        return table(("image", "name", "owner", "region", "replaces", "package"),
                     [(i.image_id, i.name, i.owner, i.region, i.previous or "-",
                       i.package or "-") for i in self.images])


@runs("local")
def ensure_resources(project: Project, progress: ProgressFn = silent) -> ResourcesReport:
    """Make what is missing for every combo; wait for the groups' first deployments."""
    maker = _Maker(project, progress)
    problems: list[str] = []
    for combo in project.config.combos():
        if isinstance(combo, Problem):
            problems.append(combo.format(project.root))
            continue
        try:
            resolved = project.resolve(combo.app, combo.env, combo.comp)
            for region in resolved.settings.aws_regions:  # a multi-region env: in each
                maker.combo(resolved.in_region(region))
        except BuilderError as exc:
            problems.append(f"{combo}: {exc.format(project.root)}")
    problems += maker.wait_for_deployments()
    return ResourcesReport(tuple(maker.resources.values()), tuple(problems))


@runs("local")
def publish_source_ami(project: Project, app: str, env: str,
                       package: tuple[str, str] | None = None) -> PublishedImages:
    """A newer base image for every source_ami_filter of the env's comps, newer by name
    and CreationDate than every image the filter matches today. Its build host layer
    carries over the replaced image's and, with `package` (name, version), has that
    package installed (buildhost.make_base_layer)."""
    project = local_project(project)
    if package is not None:
        buildhost.check_package(package)
    seen: set[tuple[str, str, str]] = set()
    published: list[PublishedImage] = []
    for comp in project.config.components(app, env):
        resolved = project.resolve(app, env, comp)
        settings = resolved.settings
        if settings.source_ami_filter is None:
            continue
        base = _BaseImage(project.env_aws(resolved), settings)
        if base.key in seen:
            continue
        seen.add(base.key)
        with buildhost.new_base_layer(project.layout, previous=base.newest_id(),
                                      package=package) as keep_layer:
            image = base.publish_newer(_endpoint(project))
            if keep_layer(image.image_id) and package:
                image = replace(image, package="=".join(package))
        published.append(image)
    if not published:
        raise InputError(f"{app}/{env}: no comp uses source_ami_filter (a fixed source_ami "
                         "never gets newer)")
    return PublishedImages(tuple(published))


def _endpoint(project: Project) -> str:
    endpoint = project.aws.local_endpoint
    if endpoint is None:  # guards against making resources in real AWS
        raise InputError("local resources need the local stack (--local)")
    return endpoint


class _BaseImage:
    """The base images one filter matches, as the env's account sees them."""

    def __init__(self, env_aws: EnvAws, settings: Settings):
        assert settings.source_ami_filter is not None
        self.ec2 = env_aws.client("ec2")
        self.region = settings.aws_region
        self.pattern = settings.source_ami_filter.name
        owners = settings.source_ami_filter.owners
        self.owners = list(owners)
        self.owner = _owner_account(owners[0] if owners else "", settings.aws_account_id)
        self.key = (self.owner, self.region, self.pattern)

    def matches(self) -> list[Image]:
        """Newest first, as `most_recent` picks them."""
        return describe(self.ec2, owners=self.owners, filters={"name": [self.pattern]})

    def newest_id(self) -> str | None:
        """The image the filter picks today."""
        images = self.matches()
        return images[0].id if images else None

    def ensure(self, endpoint: str) -> tuple[str, Resource]:
        images = self.matches()
        if images:
            return images[0].id, Resource(self.owner, self.region, "image", images[0].name,
                                          made=False)
        yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0,
                                              microsecond=0) - timedelta(days=1)
        name = _serial_name(self.pattern, yesterday.strftime("%Y%m%d"))
        answer = _publish(endpoint, self.owner, self.region, name, yesterday)
        return answer["image_id"], Resource(self.owner, self.region, "image", name,
                                            made=bool(answer["made"]))

    def publish_newer(self, endpoint: str) -> PublishedImage:
        if "*" not in self.pattern:
            raise InputError(f"source_ami_filter name {self.pattern!r} has no '*': a newer "
                             "image could not have another name")
        images = self.matches()
        names = {image.name for image in images}
        now = datetime.now(UTC).replace(microsecond=0)
        serial = now.strftime("%Y%m%d")
        name, counter = _serial_name(self.pattern, serial), 0
        while name in names:
            counter += 1
            name = _serial_name(self.pattern, f"{serial}.{counter}")
        created = now
        if images:
            created = max(now, images[0].created.replace(microsecond=0) + timedelta(seconds=1))
        answer = _publish(endpoint, self.owner, self.region, name, created)
        return PublishedImage(answer["image_id"], name, self.owner, self.region, created,
                              images[0].id if images else None)


def _publish(endpoint: str, owner: str, region: str, name: str, created: datetime,
             **extra: Any) -> dict[str, Any]:
    answer: dict[str, Any] = control.call(endpoint, "images", {
        "owner": owner, "region": region, "name": name,
        "creation_date": created.isoformat(), **extra})
    return answer


def _owner_account(owner: str, account: str) -> str:
    if owner == "self":
        return account
    if len(owner) == 12 and owner.isdigit():
        return owner
    raise InputError(f"source_ami_filter owner {owner!r}: the local stack makes base images "
                     "for account ids and 'self' only")


def _serial_name(pattern: str, serial: str) -> str:
    """A name the pattern matches, with `serial` where its last '*' is."""
    head, star, tail = pattern.rpartition("*")
    name = head.replace("*", "") + serial + tail if star else pattern
    return name.replace("?", "0")


class _Maker:
    """Makes the resources of one combo after another, each (account, region, kind,
    name) once, and remembers the deployments to wait for."""

    def __init__(self, project: Project, progress: ProgressFn):
        self.project = project
        self.endpoint = _endpoint(project)
        self.progress = progress
        self.resources: dict[tuple[str, str, str, str], Resource] = {}
        self.images: dict[tuple[str, str, str], str] = {}
        self.deployments: list[tuple[EnvAws, str, str]] = []

    def combo(self, resolved: ResolvedVars) -> None:
        settings = resolved.settings
        env_aws = self.project.env_aws(resolved)
        image_id = self._base_image(env_aws, settings)
        if settings.kms_key.startswith("alias/"):
            self._once(env_aws, "kms_alias", settings.kms_key,
                       lambda: _ensure_kms_alias(env_aws, settings.kms_key))
        if settings.vault_password_ssm_parameter:
            self._vault_parameter(env_aws, settings.vault_password_ssm_parameter)
        self._network(env_aws, resolved)
        profile = resolved.values.get("iam_instance_profile")
        if isinstance(profile, str) and profile:
            self._once(env_aws, "instance_profile", profile,
                       lambda: _ensure_instance_profile(env_aws, profile))
        self._once(env_aws, "launch_template", settings.launch_template_name,
                   lambda: _ensure_launch_template(env_aws, settings, image_id))
        bucket = _bucket_name(resolved)
        self._once(env_aws, "bucket", bucket, lambda: _ensure_bucket(env_aws, bucket))
        records_bucket = settings.records_bucket
        if records_bucket:
            self._once(env_aws, "bucket", records_bucket,
                       lambda: _ensure_bucket(env_aws, records_bucket))
        key = f"{resolved.combo.comp}/initial.zip"
        self._once(env_aws, "revision", f"s3://{bucket}/{key}",
                   lambda: _ensure_revision(env_aws, bucket, key))
        self._once(env_aws, "codedeploy_application", settings.codedeploy_application,
                   lambda: _ensure_application(env_aws, settings.codedeploy_application))
        self._once(env_aws, "deployment_group", settings.codedeploy_deployment_group,
                   lambda: self._ensure_group(env_aws, resolved, bucket, key))
        self.progress("local", f"{resolved.combo}: resources ready in {settings.aws_region}")

    def wait_for_deployments(self) -> list[str]:
        """Wait for the first deployments; a failed one is a problem of the report."""
        statuses: dict[str, str] = {}

        def ended() -> dict[str, str] | None:
            for env_aws, deployment_id, _ in self.deployments:
                if statuses.get(deployment_id) not in codedeploy.FINAL_STATUSES:
                    statuses[deployment_id] = codedeploy.get(
                        env_aws.client("codedeploy"), deployment_id).status
            done = all(s in codedeploy.FINAL_STATUSES for s in statuses.values())
            return statuses if done else None

        poll_until(ended, timeout_s=DEPLOYMENT_TIMEOUT_SECONDS, interval_s=0.1,
                   what="the first deployments")
        return [f"{group}: first deployment {deployment_id} ended {statuses[deployment_id]}"
                for _, deployment_id, group in self.deployments
                if statuses[deployment_id] != codedeploy.SUCCEEDED]

    def _network(self, env_aws: EnvAws, resolved: ResolvedVars) -> None:
        """A VPC and subnet tagged to match the env's `vpc_filter` / `subnet_filter`, as a
        real account has them (the region's default VPC and subnets exist already)."""
        filters = {key: _tag_filters(resolved.values.get(key))
                   for key in ("vpc_filter", "subnet_filter")}
        if not any(filters.values()):
            return
        name = ",".join(f"{k}={v}" for key in ("vpc_filter", "subnet_filter")
                        for k, v in sorted(filters[key].items()))
        self._once(env_aws, "network", name, lambda: _ensure_network(
            env_aws, filters["vpc_filter"], filters["subnet_filter"]))

    def _once(self, env_aws: EnvAws, kind: str, name: str, make: Callable[[], bool]) -> None:
        key = (env_aws.account_id, env_aws.region, kind, name)
        if key not in self.resources:
            self.resources[key] = Resource(*key, made=make())

    def _base_image(self, env_aws: EnvAws, settings: Settings) -> str:
        if settings.source_ami is not None:
            # A fixed id: the env's own image, made with that very id.
            ami, account = settings.source_ami, settings.aws_account_id
            key = (account, settings.aws_region, ami)
            if key not in self.images:
                answer = _publish(self.endpoint, account, settings.aws_region,
                                  f"local-source-{ami}", datetime.now(UTC), image_id=ami,
                                  public=False)
                self.images[key] = answer["image_id"]
                self._once(env_aws, "image", ami, lambda: bool(answer["made"]))
            return self.images[key]
        base = _BaseImage(env_aws, settings)
        if base.key not in self.images:
            image_id, resource = base.ensure(self.endpoint)
            self.images[base.key] = image_id
            self.resources.setdefault(
                (resource.account, resource.region, resource.kind, resource.name), resource)
        return self.images[base.key]

    def _vault_parameter(self, env_aws: EnvAws, name: str) -> None:
        password_file = os.environ.get(VAULT_PASSWORD_FILE_ENV)
        if not password_file:
            return  # nothing to put there; bakes then need --vault-password-file
        self._once(env_aws, "ssm_parameter", name,
                   lambda: _ensure_secure_parameter(env_aws, name, Path(password_file)))

    def _ensure_group(self, env_aws: EnvAws, resolved: ResolvedVars, bucket: str,
                      key: str) -> bool:
        """The deployment group over the fleet its deploy_strategy needs: one ASG it
        copies, or (blue_green_existing) a pair it discovers, the first one serving."""
        settings = resolved.settings
        client = env_aws.client("codedeploy")
        application = settings.codedeploy_application
        group_name = settings.codedeploy_deployment_group
        existing = settings.deploy_strategy == DeployStrategy.BLUE_GREEN_EXISTING
        group = _absent(("DeploymentGroupDoesNotExistException",),
                        f"looking up deployment group {group_name}",
                        lambda: codedeploy.group(client, application, group_name))
        if group is None:
            template = settings.launch_template_name
            if existing:
                serving, idle = settings.asg_pair or (f"{group_name}-a", f"{group_name}-b")
                for slot, name, size in (("a", serving, 1), ("b", idle, 0)):
                    _ensure_asg(env_aws, name, template, size=size,
                                tags=_slot_tags(resolved, slot))
                asgs = (serving,)
            elif settings.deploy_strategy == DeployStrategy.INSTANCE_REFRESH:
                # two instances, so a refresh goes in two batches
                asgs = (_ensure_asg(env_aws, settings.auto_scaling_group, template, size=2),)
            else:
                asgs = (_ensure_asg(env_aws, group_name, template),)
            with translate(f"making deployment group {group_name}"):
                client.create_deployment_group(**_group_spec(
                    settings, application, group_name, asgs[0], existing=existing))
        elif group.target_revision:
            return False
        else:
            asgs = group.asg_names
        active = codedeploy.active(client, application, group_name)
        if active:
            deployment_id = active[0]
        else:
            with translate(f"deploying the first revision to {group_name}"):
                request: dict[str, Any] = {
                    "applicationName": application, "deploymentGroupName": group_name,
                    "revision": codedeploy.s3_revision(f"s3://{bucket}/{key}"),
                    "description": "the revision Terraform's first apply deployed"}
                if existing:  # onto the serving group itself: there is no other yet
                    request["targetInstances"] = {"autoScalingGroups": list(asgs[:1])}
                deployment_id = client.create_deployment(**request)["deploymentId"]
        self.deployments.append((env_aws, deployment_id, group_name))
        return group is None


def _absent(codes: tuple[str, ...], doing: str, call: Callable[[], Any]) -> Any:
    """The call's answer, or None when AWS says (with one of `codes`) it isn't there."""
    try:
        with translate(doing):
            return call()
    except AwsError as exc:
        if exc.code in codes:
            return None
        raise


def _ensure_kms_alias(env_aws: EnvAws, alias: str) -> bool:
    kms = env_aws.client("kms")
    with translate(f"looking up KMS alias {alias}"):
        aliases = [a["AliasName"] for page in kms.get_paginator("list_aliases").paginate()
                   for a in page["Aliases"]]
    if alias in aliases:
        return False
    with translate(f"making KMS key {alias}"):
        key_id = kms.create_key(Description=f"AMI encryption ({alias})")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    return True


def _ensure_secure_parameter(env_aws: EnvAws, name: str, password_file: Path) -> bool:
    """The vault password, from the file; rewritten when the file says otherwise."""
    try:
        value = password_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InputError(f"{VAULT_PASSWORD_FILE_ENV}: can't read {password_file}: "
                         f"{exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{VAULT_PASSWORD_FILE_ENV}: {password_file} is not UTF-8 text"
                         ) from exc
    remember(value)
    ssm = env_aws.client("ssm")
    current = _absent(("ParameterNotFound",), f"looking up SSM parameter {name}",
                      lambda: ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"])
    if current is not None and current["Value"] == value:
        return False
    with translate(f"putting SSM parameter {name}"):
        ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)
    return current is None


def _tag_filters(value: Any) -> dict[str, str]:
    """The `tag:KEY` entries of a filter mapping: the ones tagging can satisfy."""
    if not isinstance(value, dict):
        return {}
    return {str(k)[4:]: str(v) for k, v in value.items() if str(k).startswith("tag:")}


def _ensure_network(env_aws: EnvAws, vpc_tags: dict[str, str], subnet_tags: dict[str, str]
                    ) -> bool:
    """A VPC with `vpc_tags` (the default VPC when there are none) holding a subnet with
    `subnet_tags`; each made only when none matches yet."""
    ec2 = env_aws.client("ec2")

    def tagged(tags: dict[str, str]) -> list[FilterTypeDef]:
        return [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]

    made = False
    with translate("making the VPC and subnet the vars' filters name"):
        if vpc_tags:
            vpcs = ec2.describe_vpcs(Filters=tagged(vpc_tags))["Vpcs"]
            if not vpcs:
                count = len(ec2.describe_vpcs()["Vpcs"])
                vpc = ec2.create_vpc(CidrBlock=f"10.{100 + count % 150}.0.0/16")["Vpc"]
                ec2.create_tags(Resources=[vpc["VpcId"]],
                                Tags=[{"Key": k, "Value": v} for k, v in vpc_tags.items()])
                vpcs, made = [vpc], True
        else:
            vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        vpc_id = vpcs[0]["VpcId"]
        if not subnet_tags:
            return made
        subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                *tagged(subnet_tags)])["Subnets"]
        if subnets:
            return made
        count = len(ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])[
            "Subnets"])
        block = vpcs[0]["CidrBlock"].split(".")
        subnet = ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=f"{block[0]}.{block[1]}.{200 + count % 50}.0/24")["Subnet"]
        ec2.create_tags(Resources=[subnet["SubnetId"]],
                        Tags=[{"Key": k, "Value": v} for k, v in subnet_tags.items()])
    return True


def _ensure_instance_profile(env_aws: EnvAws, name: str) -> bool:
    """The instance profile `iam_instance_profile` names, with a role of the same name."""
    # No IAM client stubs are installed (the only IAM call builder makes is this one).
    iam: Any = cast(Any, env_aws).client("iam")
    found = _absent(("NoSuchEntity",), f"looking up instance profile {name}",
                    lambda: iam.get_instance_profile(InstanceProfileName=name))
    if found is not None:
        return False
    with translate(f"making instance profile {name}"):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=(
            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":'
            '{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}'))
        iam.create_instance_profile(InstanceProfileName=name)
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return True


def _ensure_launch_template(env_aws: EnvAws, settings: Settings, image_id: str) -> bool:
    ec2 = env_aws.client("ec2")
    name = settings.launch_template_name
    found = _absent(("InvalidLaunchTemplateName.NotFoundException",),
                    f"looking up launch template {name}",
                    lambda: ec2.describe_launch_templates(LaunchTemplateNames=[name]))
    if found is not None:
        return False
    with translate(f"making launch template {name}"):
        ec2.create_launch_template(
            LaunchTemplateName=name, VersionDescription="made by terraform",
            # The stubs list every instance type; the env's is a string AWS checks.
            LaunchTemplateData={"ImageId": image_id, "InstanceType": cast(
                "InstanceTypeType", settings.instance_type)})
    return True


def _slot_tags(resolved: ResolvedVars, slot: str) -> dict[str, str]:
    """The tags that let blue_green_existing find the pair without asg_pair."""
    combo = resolved.combo
    return {images.TAG_APP: combo.app, images.TAG_ENV: combo.env,
            images.TAG_COMP: combo.comp, images.TAG_SLOT: slot}


def _ensure_asg(env_aws: EnvAws, name: str, launch_template: str, *, size: int = 1,
                tags: dict[str, str] | None = None) -> str:
    autoscaling = env_aws.client("autoscaling")
    with translate(f"looking up Auto Scaling group {name}"):
        groups = autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[name])["AutoScalingGroups"]
        if groups:
            return name
        subnets = env_aws.client("ec2").describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    with translate(f"making Auto Scaling group {name}"):
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=size, MaxSize=max(size + 1, 2),
            DesiredCapacity=size,
            LaunchTemplate={"LaunchTemplateName": launch_template, "Version": "$Default"},
            VPCZoneIdentifier=",".join(sorted(s["SubnetId"] for s in subnets)),
            Tags=[{"Key": key, "Value": value, "PropagateAtLaunch": False,
                   "ResourceId": name, "ResourceType": "auto-scaling-group"}
                  for key, value in (tags or {}).items()])
    return name


def _bucket_name(resolved: ResolvedVars) -> str:
    combo, settings = resolved.combo, resolved.settings
    return f"{combo.app}-{combo.env}-codedeploy-{settings.aws_account_id}"


def _ensure_bucket(env_aws: EnvAws, bucket: str) -> bool:
    s3 = env_aws.client("s3")
    if _absent(("404", "NoSuchBucket"), f"looking up bucket {bucket}",
               lambda: s3.head_bucket(Bucket=bucket)) is not None:
        return False
    with translate(f"making bucket {bucket}"):
        if env_aws.region == "us-east-1":  # the one region S3 refuses as a constraint
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={
                "LocationConstraint": cast("BucketLocationConstraintType", env_aws.region)})
    return True


def _ensure_revision(env_aws: EnvAws, bucket: str, key: str) -> bool:
    s3 = env_aws.client("s3")
    if _absent(("404", "NoSuchKey"), f"looking up s3://{bucket}/{key}",
               lambda: s3.head_object(Bucket=bucket, Key=key)) is not None:
        return False
    with translate(f"uploading s3://{bucket}/{key}"):
        s3.put_object(Bucket=bucket, Key=key, Body=revision_bundle())
    return True


def revision_bundle(appspec: str = APPSPEC) -> bytes:
    """A CodeDeploy revision: a zip holding appspec.yml."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(zipfile.ZipInfo("appspec.yml", date_time=(2020, 1, 1, 0, 0, 0)),
                        appspec)
    return buffer.getvalue()


def _ensure_application(env_aws: EnvAws, application: str) -> bool:
    codedeploy = env_aws.client("codedeploy")
    if _absent(("ApplicationDoesNotExistException",), f"looking up application {application}",
               lambda: codedeploy.get_application(applicationName=application)) is not None:
        return False
    with translate(f"making CodeDeploy application {application}"):
        codedeploy.create_application(applicationName=application, computePlatform="Server")
    return True


def _group_spec(settings: Settings, application: str, group: str, asg: str, *,
                existing: bool = False) -> dict[str, Any]:
    """A group as Terraform users set it up for the comp's deploy_strategy: blue/green
    copying the ASG (or, `existing`, deploying onto the other standing one), routing
    traffic, rolling back on failure; or (instance_refresh) in place on the ASG,
    installing the revision on each instance it launches."""
    role = arn(settings.aws_region, "iam", settings.aws_account_id, "role/codedeploy",
               in_region=False)
    if settings.deploy_strategy == DeployStrategy.INSTANCE_REFRESH:
        return {
            "applicationName": application, "deploymentGroupName": group,
            "serviceRoleArn": role,
            "autoScalingGroups": [asg], "deploymentConfigName": "CodeDeployDefault.OneAtATime",
            "deploymentStyle": {"deploymentType": "IN_PLACE",
                                "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"},
            "autoRollbackConfiguration": {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]},
        }
    return {
        "applicationName": application, "deploymentGroupName": group,
        "serviceRoleArn": role,
        "autoScalingGroups": [asg], "deploymentConfigName": "CodeDeployDefault.AllAtOnce",
        "deploymentStyle": {"deploymentType": "BLUE_GREEN",
                            "deploymentOption": "WITH_TRAFFIC_CONTROL"},
        "blueGreenDeploymentConfiguration": {
            "terminateBlueInstancesOnDeploymentSuccess": {
                "action": "TERMINATE", "terminationWaitTimeInMinutes": 0},
            "deploymentReadyOption": {"actionOnTimeout": "CONTINUE_DEPLOYMENT"},
            "greenFleetProvisioningOption": {
                "action": "DISCOVER_EXISTING" if existing else "COPY_AUTO_SCALING_GROUP"}},
        "loadBalancerInfo": {"targetGroupInfoList": [{"name": group}]},
        "autoRollbackConfiguration": {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]},
    }

