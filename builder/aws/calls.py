"""The calls table: every AWS action each builder step needs, and why.

This table is the truth the IAM policies are made from (`builder iam-policy`,
builder.aws.policy) and the AWS layer checks the code against it: with
BUILDER_CHECK_CALLS=1 (the test suite sets it) every SDK call made while a step runs
must be listed for that step, or the call raises `UnlistedCall` — so the policies
cannot drift from the code.

    step            what runs it                         includes
    bake            builder bake                         packer (Packer's own calls)
    release         builder release, bake --release      -
    promote         builder promote                      release (in the target env), bake
                                                         (`promote_by: rebake` only)
    prune           builder prune                        -
    reap            builder reap                         -
    status          builder status                       -
    rebuild         builder rebuild                      bake, release, promote, status
    doctor          builder doctor                       -
    local           builder local up (the emulator's     never in a policy: it stands in
                    "Terraform"; never real AWS)         for the user's own Terraform

A row names the IAM action, the resource it is scoped to (a kind that
builder.aws.policy turns into ARNs and conditions from the config), which account's
role needs it (promote: the target env's, or the source env's for sharing) and who
makes the call: builder's SDK call (checked at run time), Packer's amazon-ebs builder
(its documented minimal policy), or AWS itself on builder's behalf (authorised against
the caller when builder's call runs, e.g. CopyImage of an encrypted image uses the
KMS keys).
"""

from __future__ import annotations

import functools
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, TypeVar

CHECK_ENV = "BUILDER_CHECK_CALLS"
# With the check on, calls made outside every step (by tests, standing in for Terraform
# or for people acting on the account) carry this header: the emulator's IAM
# enforcement judges builder's and Packer's calls, not theirs.
OUTSIDE_HEADER = "X-Builder-Outside-Step"

Side = Literal["env", "source"]
By = Literal["builder", "packer", "aws"]

# Resource kinds (builder.aws.policy resolves them per env):
ANY = "*"
IMAGE = "image"                    # arn:<partition>:ec2:<region>::image/*
BUILDER_IMAGE = "builder-image"    # images tagged builder:app=<app>
SNAPSHOT = "snapshot"              # arn:<partition>:ec2:<region>::snapshot/*
RUN_NEW = "run-new"                # created with the builder:run-id tag in the request
RUN_TAGGED = "run-tagged"          # instances, volumes, key pairs, groups tagged builder:run-id
RUN_LAUNCHED = "run-launched"      # tags given at launch (ec2:CreateAction RunInstances)
PACKER_LAUNCH = "packer-launch"    # RunInstances: new instance and volumes tagged run-id
PACKER_IMAGE = "packer-image"      # CreateImage: from a run-id instance
LAUNCH_TEMPLATE = "launch-template"
ASG = "asg"
DEPLOYMENT_GROUP = "deployment-group"
DEPLOYMENT_CONFIG = "deployment-config"
APPLICATION = "application"
LOCK_TABLE = "lock-table"
KMS_KEY = "kms-key"                # the env's kms_key_id (by alias or ARN)
SOURCE_KMS_KEY = "source-kms-key"  # promote: the source env's key, used by the target
SSM_PARAMETER = "ssm-parameter"    # vault_password_ssm_parameter
AMI_PARAMETER = "ami-parameter"    # ami_ssm_parameter
ANY_PARAMETER = "any-parameter"    # every SSM parameter of the env's account and region
INSTANCE_PROFILE = "instance-profile"  # iam_instance_profile, when set
PASS_ROLE = "pass-role"  # noqa: S105 - a resource kind; the role behind iam_instance_profile, to EC2 only
SELF_ROLE = "self-role"            # the env's own role (doctor simulates its policies)
RECORDS = "records"                # records_bucket: the bucket and its builder/<app>/ keys


@dataclass(frozen=True)
class Call:
    """One IAM action a step needs."""

    action: str
    why: str
    on: str = ANY
    side: Side = "env"
    by: By = "builder"
    when: str = ""  # a var that must be set (truthy) for the row to apply


def _calls(on: str, why: str, *actions: str, side: Side = "env", by: By = "builder",
           when: str = "") -> tuple[Call, ...]:
    return tuple(Call(action, why, on, side, by, when) for action in actions)


# The per-(app, env, comp) lock: release, bake (its own key), promote (in the target),
# prune --yes.
_LOCK = _calls(LOCK_TABLE, "the comp's lock (table made on first use)",
               "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:CreateTable",
               "dynamodb:DescribeTable")

# Removing what a failed or interrupted run registered: its AMIs and their snapshots.
_DISCARD = (
    *_calls(ANY, "find the run's AMIs and snapshots (Describe calls take no resource "
            "scope)", "ec2:DescribeImages", "ec2:DescribeSnapshots"),
    *_calls(BUILDER_IMAGE, "deregister an incomplete AMI of the run", "ec2:DeregisterImage"),
    *_calls(IMAGE, "deregister Packer's temporary AMI (untagged, so not scoped by tag)",
            "ec2:DeregisterImage"),
    *_calls(SNAPSHOT, "delete the snapshots of those AMIs", "ec2:DeleteSnapshot"),
)

# The release step, also run inside bake --release, promote and rebuild.
_RELEASE = (
    *_calls(IMAGE, "choose and check the AMI to release", "ec2:DescribeImages"),
    *_calls(BUILDER_IMAGE, "tag the AMI released, verified or failed", "ec2:CreateTags"),
    *_LOCK,
    *_calls(ANY, "read the launch template's default version (AWS allows no resource "
            "scope on Describe calls)", "ec2:DescribeLaunchTemplateVersions"),
    *_calls(LAUNCH_TEMPLATE, "add the version with the new AMI, make it the default, "
            "and put the previous one back on rollback",
            "ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate"),
    *_calls(ANY, "read the deployment group's Auto Scaling group (blue_green_existing: "
            "the pair, by name or by its builder:slot tags)",
            "autoscaling:DescribeAutoScalingGroups"),
    *_calls(ASG, "point the group's ASG at the new version (and back on rollback); "
            "blue_green_existing: size the idle ASG of the pair like the serving one, and "
            "the old one to 0", "autoscaling:UpdateAutoScalingGroup"),
    *_calls(ANY, "instance_refresh: follow the ASG's instance refresh, find one an earlier "
            "run started (AWS allows no resource scope on Describe calls)",
            "autoscaling:DescribeInstanceRefreshes"),
    *_calls(ASG, "instance_refresh: start the ASG's instance refresh; roll it back (or "
            "cancel it) on timeout", "autoscaling:StartInstanceRefresh",
            "autoscaling:RollbackInstanceRefresh", "autoscaling:CancelInstanceRefresh"),
    *_calls(LAUNCH_TEMPLATE, "AWS checks that whoever points an ASG at a launch template "
            "may launch it", "ec2:RunInstances", by="aws"),
    *_calls(DEPLOYMENT_GROUP, "find the group, start, follow and stop the blue/green "
            "deployment", "codedeploy:GetDeploymentGroup",
            "codedeploy:BatchGetDeploymentGroups", "codedeploy:CreateDeployment",
            "codedeploy:ListDeployments"),
    *_calls(DEPLOYMENT_GROUP, "follow the deployment: status, lifecycle events, stop "
            "on timeout", "codedeploy:GetDeployment", "codedeploy:ListDeploymentTargets",
            "codedeploy:BatchGetDeploymentTargets", "codedeploy:StopDeployment"),
    *_calls(DEPLOYMENT_CONFIG, "CreateDeployment reads the group's deployment config",
            "codedeploy:GetDeploymentConfig", by="aws"),
    *_calls(APPLICATION, "CreateDeployment registers and reads the revision",
            "codedeploy:GetApplicationRevision", "codedeploy:RegisterApplicationRevision",
            by="aws"),
    *_calls(BUILDER_IMAGE, "protect the AMI the launch template's default launches; on "
            "rollback unprotect it and protect the previous one",
            "ec2:EnableImageDeregistrationProtection",
            "ec2:DisableImageDeregistrationProtection", when="protect_released"),
    *_calls(AMI_PARAMETER, "point ami_ssm_parameter at the verified AMI; on rollback put "
            "its earlier value back (its history) or delete it", "ssm:GetParameter",
            "ssm:PutParameter", "ssm:GetParameterHistory", "ssm:DeleteParameter",
            when="ami_ssm_parameter"),
    *_calls(RECORDS, "keep the release record in records_bucket", "s3:PutObject",
            when="records_bucket"),
    *_calls(RECORDS, "read the build records of what runs and of the AMI (changes vs what "
            "runs)", "s3:GetObject", "s3:ListBucket", when="records_bucket"),
)

_PACKER = (
    *_calls(ANY, "Packer's amazon-ebs builder: find the base image, subnet, and follow "
            "its instance, volumes and image (Describe calls take no resource scope)",
            "ec2:DescribeImages", "ec2:DescribeImageAttribute", "ec2:DescribeInstances",
            "ec2:DescribeInstanceStatus", "ec2:DescribeRegions", "ec2:DescribeSecurityGroups",
            "ec2:DescribeSnapshots", "ec2:DescribeSubnets", "ec2:DescribeTags",
            "ec2:DescribeVolumes", "ec2:DescribeKeyPairs", by="packer"),
    *_calls(PACKER_LAUNCH, "Packer launches the builder instance (its run_tags carry "
            "builder:run-id)", "ec2:RunInstances", by="packer"),
    *_calls(RUN_LAUNCHED, "Packer tags the builder instance and its volumes at launch",
            "ec2:CreateTags", by="packer"),
    *_calls(RUN_TAGGED, "Packer stops and terminates its builder instance",
            "ec2:StopInstances", "ec2:TerminateInstances", "ec2:ModifyInstanceAttribute",
            by="packer"),
    *_calls(PACKER_IMAGE, "Packer makes the AMI from the stopped instance and tags it",
            "ec2:CreateImage", by="packer"),
    *_calls(BUILDER_IMAGE, "Packer tags the AMI and its snapshots", "ec2:CreateTags",
            by="packer"),
    *_calls(ANY, "encrypt_boot: Packer copies the AMI encrypted", "ec2:CopyImage",
            by="packer", when="encrypt_boot"),
    *_calls(IMAGE, "encrypt_boot: Packer removes the unencrypted AMI it copied from "
            "(untagged, so not scoped by tag)", "ec2:DeregisterImage", by="packer",
            when="encrypt_boot"),
    *_calls(SNAPSHOT, "encrypt_boot: and that AMI's snapshots", "ec2:DeleteSnapshot",
            by="packer", when="encrypt_boot"),
    *_calls(BUILDER_IMAGE, "ami_users: Packer shares the AMI and its snapshots",
            "ec2:ModifyImageAttribute", "ec2:ModifySnapshotAttribute", by="packer",
            when="ami_users"),
    *_calls(INSTANCE_PROFILE, "Packer attaches iam_instance_profile to the builder instance",
            "iam:GetInstanceProfile", by="packer", when="iam_instance_profile"),
    *_calls(PASS_ROLE, "Packer passes iam_instance_profile's role to EC2", "iam:PassRole",
            by="packer", when="iam_instance_profile"),
    *_calls(KMS_KEY, "encrypt the AMI's volumes with kms_key_id", "kms:CreateGrant",
            "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom",
            "kms:ReEncryptTo", "kms:Decrypt", by="aws", when="encrypt_boot"),
)

_BAKE = (
    *_calls(IMAGE, "resolve the base image and find an AMI with the same fingerprint",
            "ec2:DescribeImages"),
    *_calls(BUILDER_IMAGE, "tag the new AMI and its snapshots", "ec2:CreateTags"),
    *_calls(BUILDER_IMAGE, "ami_deprecate_after_days: set the new AMI's deprecation time",
            "ec2:EnableImageDeprecation", when="ami_deprecate_after_days"),
    *_calls(SSM_PARAMETER, "read the vault password", "ssm:GetParameter",
            when="vault_password_ssm_parameter"),
    *_calls(RUN_NEW, "the bake's own SSH key pair and security group, tagged with its run id",
            "ec2:ImportKeyPair", "ec2:CreateSecurityGroup"),
    *_calls(RUN_NEW, "tag the key pair and security group as they are made",
            "ec2:CreateTags"),
    *_calls(RUN_TAGGED, "open SSH to the builder instance, then remove the bake's key pair "
            "and security group", "ec2:AuthorizeSecurityGroupIngress", "ec2:DeleteKeyPair",
            "ec2:DeleteSecurityGroup"),
    *_calls(ANY, "find the VPC for the security group", "ec2:DescribeVpcs",
            "ec2:DescribeSubnets"),
    *_calls(ANY, "--keep-on-failure: find the run's instance Packer left (Describe calls "
            "take no resource scope)", "ec2:DescribeInstances"),
    *_calls(RUN_TAGGED, "--keep-on-failure: tag the failed run's instance, key pair and "
            "security group kept-until, or terminate the instance Packer left on another "
            "failure", "ec2:CreateTags", "ec2:TerminateInstances"),
    *_calls(ANY, "a multi-region env: copy the AMI to its other regions (each region's "
            "kms_key_id re-encrypts the copy)", "ec2:CopyImage", when="other_regions"),
    *_calls(KMS_KEY, "re-encrypt the copies with the region's kms_key_id", "kms:CreateGrant",
            "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom",
            "kms:ReEncryptTo", "kms:Decrypt", by="aws", when="other_regions"),
    *_LOCK,
    *_DISCARD,
    *_calls(RECORDS, "keep the build record (result, fingerprint inputs, packages.json) "
            "in records_bucket; remove it when the AMI can't be completed",
            "s3:PutObject", "s3:DeleteObject", when="records_bucket"),
)

_PROMOTE = (
    # In the source env's account: check, share and unshare.
    *_calls(IMAGE, "read the AMI, its snapshots and who may launch it",
            "ec2:DescribeImages", "ec2:DescribeImageAttribute", "ec2:DescribeSnapshots",
            "ec2:DescribeSnapshotAttribute", side="source"),
    *_calls(ANY, "read the launch template's default version (the AMI to promote)",
            "ec2:DescribeLaunchTemplateVersions", side="source"),
    *_calls(BUILDER_IMAGE, "share the AMI with the target account, and unshare it; record "
            "the share on the AMI (a tag) so a killed run's share can be found and removed",
            "ec2:ModifyImageAttribute", "ec2:CreateTags", "ec2:DeleteTags", side="source"),
    *_calls(SNAPSHOT, "share the AMI's snapshots with the target account, and unshare them",
            "ec2:ModifySnapshotAttribute", side="source"),
    *_calls(KMS_KEY, "check that the target may use the snapshots' key; add and revoke "
            "a grant for it when its key policy does not allow it",
            "kms:DescribeKey", "kms:GetKeyPolicy", "kms:ListGrants", "kms:CreateGrant",
            "kms:RevokeGrant", side="source"),
    *_calls(ANY, "find the key behind an alias", "kms:ListAliases", side="source"),
    # In the target env's account: copy, re-encrypt, tag, clean up a failed copy.
    *_calls(IMAGE, "find a copy already made, follow the copy", "ec2:DescribeImages"),
    *_calls(ANY, "copy the shared AMI into this account and region", "ec2:CopyImage"),
    *_calls(BUILDER_IMAGE, "tag the copy with its lineage; remove a failed copy",
            "ec2:CreateTags", "ec2:DeregisterImage"),
    *_calls(BUILDER_IMAGE, "ami_deprecate_after_days: set the copy's deprecation time "
            "(EC2 doesn't copy it)", "ec2:EnableImageDeprecation",
            when="ami_deprecate_after_days"),
    *_calls(SNAPSHOT, "remove a failed copy's snapshots", "ec2:DeleteSnapshot"),
    *_calls(ANY, "find a failed copy's snapshots", "ec2:DescribeSnapshots"),
    *_calls(KMS_KEY, "check the target's kms_key_id; re-encrypt the copy with it",
            "kms:DescribeKey", "kms:CreateGrant", "kms:GenerateDataKeyWithoutPlaintext",
            "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:Decrypt"),
    *_calls(ANY, "find the key behind an alias", "kms:ListAliases"),
    *_calls(SOURCE_KMS_KEY, "CopyImage decrypts the shared snapshots with the source "
            "env's key (its key policy must allow this account too)",
            "kms:DescribeKey", "kms:CreateGrant", "kms:Decrypt", "kms:ReEncryptFrom",
            by="aws"),
)

_PRUNE = (
    *_calls(IMAGE, "list the comp's AMIs and who may launch them", "ec2:DescribeImages",
            "ec2:DescribeImageAttribute"),
    *_calls(ANY, "find what still uses an AMI: launch templates, ASGs, launch "
            "configurations, instances", "ec2:DescribeLaunchTemplateVersions",
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeLaunchConfigurations", "ec2:DescribeInstances"),
    *_calls(DEPLOYMENT_GROUP, "find deployments in progress", "codedeploy:ListDeployments",
            "codedeploy:GetDeploymentGroup"),
    *_calls(BUILDER_IMAGE, "deregister the old AMIs (their deregistration protection "
            "off first)", "ec2:DeregisterImage", "ec2:DisableImageDeregistrationProtection"),
    *_calls(ANY_PARAMETER, "find the AMIs any SSM parameter of the account names",
            "ssm:DescribeParameters", "ssm:GetParameters"),
    *_calls(SNAPSHOT, "delete their snapshots", "ec2:DeleteSnapshot"),
    *_LOCK,
)

_REAP = (
    *_calls(ANY, "find what crashed runs left (Describe calls take no resource scope)",
            "ec2:DescribeInstances", "ec2:DescribeKeyPairs", "ec2:DescribeSecurityGroups"),
    *_calls(RUN_TAGGED, "remove the builder instances, key pairs and security groups",
            "ec2:TerminateInstances", "ec2:DeleteKeyPair", "ec2:DeleteSecurityGroup"),
    *_DISCARD,
    *_calls(BUILDER_IMAGE, "remove a killed promotion's share of a source AMI and its "
            "record", "ec2:ModifyImageAttribute", "ec2:DeleteTags"),
    *_calls(SNAPSHOT, "unshare that AMI's snapshots", "ec2:ModifySnapshotAttribute"),
    *_calls(KMS_KEY, "revoke that promotion's grant on the snapshots' key",
            "kms:ListGrants", "kms:RevokeGrant"),
)

_STATUS = (
    *_calls(IMAGE, "the AMIs of every comp and the newest base images",
            "ec2:DescribeImages"),
    *_calls(ANY, "what every launch template launches",
            "ec2:DescribeLaunchTemplateVersions"),
    *_calls(DEPLOYMENT_GROUP, "the last deployment of every comp",
            "codedeploy:GetDeploymentGroup", "codedeploy:BatchGetDeploymentGroups",
            "codedeploy:ListDeployments", "codedeploy:GetDeployment"),
    *_calls(RECORDS, "diff and rebuild: read the build records of AMIs baked elsewhere",
            "s3:GetObject", "s3:ListBucket", when="records_bucket"),
)

_DOCTOR = (
    *_calls(ANY, "check whose credentials these are", "sts:GetCallerIdentity"),
    *_calls(SELF_ROLE, "check the role's policies allow what builder needs",
            "iam:SimulatePrincipalPolicy"),
)

# The emulator's stand-in for the user's Terraform: made with the env's role in local
# mode (before IAM enforcement starts), never part of a generated policy.
_LOCAL = (
    *_calls(ANY, "pre-made resources (local mode only)",
            "ec2:DescribeImages", "ec2:DescribeLaunchTemplates", "ec2:CreateLaunchTemplate",
            "ec2:DescribeSubnets", "ec2:CreateTags", "ec2:DescribeVpcs", "ec2:CreateVpc",
            "ec2:CreateSubnet", "iam:GetInstanceProfile", "iam:CreateInstanceProfile",
            "iam:CreateRole", "iam:AddRoleToInstanceProfile",
            "autoscaling:DescribeAutoScalingGroups", "autoscaling:CreateAutoScalingGroup",
            "s3:ListBucket", "s3:CreateBucket", "s3:GetObject", "s3:PutObject",
            "codedeploy:GetApplication", "codedeploy:CreateApplication",
            "codedeploy:GetDeploymentGroup", "codedeploy:CreateDeploymentGroup",
            "codedeploy:CreateDeployment", "codedeploy:GetDeployment",
            "codedeploy:ListDeployments", "kms:ListAliases", "kms:CreateKey", "kms:CreateAlias",
            "ssm:GetParameter", "ssm:PutParameter"),
)

STEPS: Mapping[str, tuple[Call, ...]] = {
    "bake": _BAKE, "packer": _PACKER, "release": _RELEASE, "promote": _PROMOTE,
    "prune": _PRUNE, "reap": _REAP, "status": _STATUS, "rebuild": (), "doctor": _DOCTOR,
    "local": _LOCAL,
}
INCLUDES: Mapping[str, tuple[str, ...]] = {
    "bake": ("packer",), "promote": ("release", "bake"),
    "rebuild": ("bake", "release", "promote", "status"),
}
# What `builder iam-policy --for all` covers: every step a user runs against real AWS.
POLICY_STEPS = ("bake", "release", "promote", "prune", "reap", "status", "rebuild", "doctor")

# Calls every step may make: assuming the env's role (its permission lives in the CI
# principal's policy, not the env role's) and asking who we are (AWS allows it always).
UNCHECKED = frozenset({"sts:AssumeRole", "sts:GetCallerIdentity"})

# SDK operations whose IAM action has another name.
_IAM_NAME = {"s3:HeadBucket": "s3:ListBucket", "s3:HeadObject": "s3:GetObject"}


def expand(step: str) -> tuple[str, ...]:
    """The step and every step it includes, each once."""
    seen: list[str] = []

    def visit(name: str) -> None:
        if name not in seen:
            seen.append(name)
            for included in INCLUDES.get(name, ()):
                visit(included)

    visit(step)
    return tuple(seen)


def calls_of(step: str) -> tuple[Call, ...]:
    """Every row a step needs, its included steps' too."""
    if step not in STEPS:
        raise KeyError(step)
    return tuple(call for name in expand(step) for call in STEPS[name])


@functools.cache
def actions_of(step: str) -> frozenset[str]:
    """The IAM actions a step needs, its included steps' too."""
    return frozenset(call.action for call in calls_of(step))


def iam_action(service: str, operation: str) -> str:
    """The IAM action an SDK call is authorised as ("ec2", "DescribeImages")."""
    name = f"{service}:{operation}"
    return _IAM_NAME.get(name, name)


class UnlistedCall(AssertionError):
    """An SDK call the calls table does not list for the running step (only raised with
    BUILDER_CHECK_CALLS=1, i.e. in tests: the table must be fixed, not the user)."""


class _Running:
    """The steps running in this process. Process-wide, not per thread: a step's worker
    threads (parallel bakes, inventory reads) make their calls in its name."""

    def __init__(self) -> None:
        self._steps: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._aside = threading.local()
        self._strict = 0
        self.unlisted: list[str] = []

    @contextmanager
    def strict(self) -> Iterator[None]:
        """In the block (a CLI command under test) every call must be a step's: a call
        made outside every step is as unlisted as one missing from the table."""
        with self._lock:
            self._strict += 1
        try:
            yield
        finally:
            with self._lock:
                self._strict -= 1

    @contextmanager
    def aside(self) -> Iterator[None]:
        """Calls this thread makes in the block are not the running step's: someone else
        acting while builder runs (a test changing a key policy from a progress hook)."""
        self._aside.on = True
        try:
            yield
        finally:
            self._aside.on = False

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        calls_of(name)  # an unknown step is a bug here, not at the first call
        with self._lock:
            self._steps[name] += 1
        try:
            yield
        finally:
            with self._lock:
                self._steps[name] -= 1
                if not self._steps[name]:
                    del self._steps[name]

    def names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._steps))

    def outside(self) -> bool:
        """Whether this thread's calls are not a builder step's."""
        return not self.names() or bool(getattr(self._aside, "on", False))

    def mark(self, request: Any, **_: Any) -> None:
        """botocore before-send hook: label a call made outside every step."""
        if self.outside():
            request.headers[OUTSIDE_HEADER] = "1"

    def check(self, model: Any, **_: Any) -> None:
        """botocore before-call hook: the call must be listed for a running step. Calls
        made outside every step (a test reading the emulator) are not builder's, unless
        a CLI command is running (strict)."""
        action = iam_action(model.service_model.service_name, model.name)
        if self.outside():
            if not self._strict or action in UNCHECKED:
                return
            message = (f"{action} is made outside every builder step: decorate the "
                       "command's entry point with builder.aws.calls.runs")
        else:
            steps = self.names()
            if action in UNCHECKED or any(action in actions_of(step) for step in steps):
                return
            message = (f"{action} is not in the calls table for step "
                       f"{' or '.join(steps)} (builder/aws/calls.py)")
        with self._lock:
            self.unlisted.append(message)
        raise UnlistedCall(message)


RUNNING = _Running()


def checking() -> bool:
    """Whether clients check their calls against the table (BUILDER_CHECK_CALLS=1)."""
    return os.environ.get(CHECK_ENV) == "1"


_P = ParamSpec("_P")
_R = TypeVar("_R")


def runs(step: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a step's entry point: its AWS calls are made in that step's name."""
    calls_of(step)

    def decorate(function: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(function)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            with RUNNING.step(step):
                return function(*args, **kwargs)

        return wrapper

    return decorate
