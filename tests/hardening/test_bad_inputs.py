"""Bad input, command by command: each case exits with its code and says why in one
message, never a traceback, and (for the commands that talk to AWS, in local mode)
leaves the emulator exactly as it was: no image, snapshot, launch template version,
security group, key pair, table, share, Auto Scaling group or deployment more or less.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from builder.cli import app
from builder.config.models import Combo
from builder.project import Project
from tests.release.emulated import make_ami

pytestmark = pytest.mark.local

ENVS = ("dev", "staging", "prod")
BOMB = "a: &a [1,1,1,1,1,1,1,1,1]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi",
                                                                   strict=True))
Setup = Callable[[Path], None]


def write(relative: str, content: str | bytes) -> Setup:
    def setup(root: Path) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return setup


def symlink(relative: str, target: str) -> Setup:
    def setup(root: Path) -> None:
        (root / relative).symlink_to(target)
    return setup


def folder(relative: str) -> Setup:
    def setup(root: Path) -> None:
        (root / relative).mkdir(parents=True)
    return setup


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    says: str
    code: int = 2
    env: dict[str, str] = field(default_factory=dict)
    setup: Setup | None = None
    aws: bool = False  # a command that talks to AWS: the emulator must stay as it was


def case(name: str, *args: str, says: str, code: int = 2, env: dict[str, str] | None = None,
         setup: Setup | None = None, local: bool = True) -> Case:
    aws = bool(args) and args[0] in {"bake", "release", "promote", "reap", "prune", "rebuild",
                                     "status", "local"}
    return Case(name, ("--local", *args) if local else args, says, code, env or {}, setup, aws)


VARS = ("vars", "demo", "dev", "app")
APP_YML = "vars/demo/dev/app.yml"
CASES = [
    # -- the environment and global options --------------------------------------------
    case("BUILDER_LOCAL=maybe", *VARS, env={"BUILDER_LOCAL": "maybe"}, says="BUILDER_LOCAL",
         local=False),
    case("BUILDER_LOCAL=2", "status", env={"BUILDER_LOCAL": "2"}, says="expected 1/0",
         local=False),
    case("-e without =", *VARS, "-e", "novalue", says="expected KEY=VALUE"),
    case("-e without a key", *VARS, "-e", "=x", says="expected KEY=VALUE"),
    case("--root missing", "--root", "/nonexistent/infra", *VARS, says="not an infra repo"),
    case("--root a file", "--root", "/etc/hostname", *VARS, says="not an infra repo"),
    # -- names ------------------------------------------------------------------------
    case("unknown app", "vars", "nope", "dev", "app", says="unknown app 'nope'"),
    case("unknown env", "vars", "demo", "nope", "app", says="unknown env 'nope'"),
    case("common is no env", "vars", "demo", "common", "app", says="unknown env 'common'"),
    case("unknown comp", "vars", "demo", "dev", "nope", says="not in this env's components"),
    case("uppercase app", "vars", "DEMO", "dev", "app", says="must match"),
    case("dotted app", "vars", "..", "dev", "app", says="must match"),
    case("300-character app", "vars", "a" * 300, "dev", "app", says="at most 40"),
    case("300-character comp", "vars", "demo", "dev", "c" * 300, says="at most 40"),
    case("app with a slash", "vars", "demo/x", "dev", "app", says="must match"),
    # -- -e values --------------------------------------------------------------------
    case("-e a built-in", *VARS, "-e", "app=other", says="is built in"),
    case("-e 1/0", *VARS, "-e", "x={{ 1/0 }}", says="-e x: Jinja: division by zero"),
    case("-e sandbox escape", *VARS, "-e", "x={{ ''.__class__.__mro__ }}",
         says="-e x: Jinja sandbox"),
    case("-e cycler globals", *VARS, "-e", "x={{ cycler.__init__.__globals__ }}",
         says="Jinja sandbox"),
    case("-e huge range", *VARS, "-e", "x={{ range(10**7) | list }}", says="range of"),
    case("-e nested loops", *VARS, "-e",
         "x={% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}",
         says="loops ran over"),
    case("-e string bomb", *VARS, "-e", "x={{ 'a' * 10**9 }}", says="over 1,000,000"),
    case("-e power", *VARS, "-e", "x={{ 9 ** 999999 }}", says="too large"),
    case("-e deep YAML", *VARS, "-e", "x=" + "[" * 5000 + "]" * 5000, says="nested deeper"),
    case("-e alias bomb", *VARS, "-e", "x=" + "{" + BOMB.replace("\n", ", ")[:-2] + "}",
         says="once aliases"),
    case("-e self reference", *VARS, "-e", "x={{ x }}", says="refers to itself"),
    case("-e undefined", *VARS, "-e", "instance_type={{ nope }}", says="'nope' is undefined"),
    case("-e bad Jinja", *VARS, "-e", "x={{ ", says="Jinja syntax"),
    case("-e account too short", *VARS, "-e", "aws_account_id=12", says="not 12 digits"),
    case("-e account letters", *VARS, "-e", "aws_account_id=abcdefghijkl",
         says="12-digit account id"),
    case("-e region", *VARS, "-e", "aws_region=mars", says="a region like"),
    case("-e role of another account", *VARS, "-e",
         "aws_role_arn=arn:aws:iam::999999999999:role/builder",
         says="a role of account 999999999999, but aws_account_id is 111111111111"),
    case("-e role not an ARN", *VARS, "-e", "aws_role_arn=admin", says="an IAM role ARN"),
    case("-e components empty", *VARS, "-e", "components=[]", says="non-empty list"),
    case("-e components bad name", *VARS, "-e", "components=[App]", says="must match"),
    case("-e source_ami", *VARS, "-e", "source_ami=zzz", says="is not an AMI id"),
    case("-e encrypt_boot", *VARS, "-e", "encrypt_boot=maybe", says="true or false"),
    case("-e cidr", *VARS, "-e", "ssh_source_cidrs=[10.0.0.0/33]", says="not a CIDR"),
    case("-e ami_keep 0", *VARS, "-e", "ami_keep=0", says="whole number ≥ 1"),
    case("-e ami_keep text", *VARS, "-e", "ami_keep=many", says="whole number ≥ 1"),
    case("-e playbook outside", *VARS, "-e", "playbook=/etc/passwd", says="inside the infra"),
    case("-e playbook up", *VARS, "-e", "playbook=../x.yml", says="inside the infra"),
    case("-e template path", *VARS, "-e", "packer_template=../x", says="template name"),
    case("-e promote from itself", *VARS, "-e", "promote_from=dev",
         says="can't promote from itself"),
    case("-e promote from nowhere", *VARS, "-e", "promote_from=qa", says="no env 'qa'"),
    case("-e ami_name short", *VARS, "-e", "ami_name=x", says="valid AMI name"),
    case("-e kms without encryption", *VARS, "-e", "encrypt_boot=false", "-e",
         "kms_key_id=alias/x", says="encrypt_boot is false"),
    case("-e source filter keys", *VARS, "-e", "source_ami_filter={owners: [1], x: 1}",
         says="unknown keys"),
    # -- vars files -------------------------------------------------------------------
    case("alias bomb", *VARS, setup=write(APP_YML, BOMB), says="YAML: over 1,000,000 values"),
    case("5000 deep", *VARS, setup=write(APP_YML, "x: " + "[" * 5000 + "]" * 5000 + "\n"),
         says="app.yml:1: YAML: nested deeper than 64"),
    case("recursive alias", *VARS, setup=write(APP_YML, "x: &r [*r]\n"),
         says="an alias refers to a value that contains it"),
    case("invalid date", *VARS, setup=write(APP_YML, "a: 1\nwhen: 2024-13-45\n"),
         says="app.yml:2: when: not a valid timestamp"),
    case("5000-digit number", *VARS, setup=write(APP_YML, "n: " + "9" * 5000 + "\n"),
         says="app.yml:1: n: not a valid int"),
    case("duplicate key", *VARS, setup=write(APP_YML, "a: 1\na: 2\n"),
         says="app.yml:2: duplicate key 'a'"),
    case("merge key overridden twice", *VARS,
         setup=write(APP_YML, "b: &b {p: 1}\nw:\n  <<: *b\n  p: 2\n  p: 3\n"),
         says="duplicate key 'w.p'"),
    case("not a mapping", *VARS, setup=write(APP_YML, "- a\n- b\n"), says="must be a mapping"),
    case("YAML syntax", *VARS, setup=write(APP_YML, "a: [1, 2\n"), says="app.yml:"),
    case("tab indent", *VARS, setup=write(APP_YML, "a:\n\t- 1\n"), says="YAML:"),
    case("int key", *VARS, setup=write(APP_YML, "1: x\n"), says="must be a string"),
    case("python tag", *VARS, setup=write(APP_YML, "x: !!python/object/apply:os.system [id]\n"),
         says="YAML:"),
    case("binary vars file", *VARS, setup=write(APP_YML, b"\xff\xfe\x00\x01"),
         says="can't read"),
    case("huge vars file", *VARS, setup=write(APP_YML, "# " + "x" * 1_100_000 + "\n"),
         says="over 1,000,000 bytes"),
    case("a folder as a layer", *VARS, setup=folder(APP_YML), says="a folder, not a vars"),
    case("dangling symlink layer", *VARS, setup=symlink(APP_YML, "nowhere.yml"),
         says="a dangling symlink"),
    case("symlink loop layer", *VARS, setup=symlink(APP_YML, "app.yml"),
         says="a symlink loop"),
    case("device as a layer", *VARS, setup=symlink(APP_YML, "/dev/null"),
         says="not a regular file"),
    case("layer outside the root", *VARS, setup=symlink(APP_YML, "/etc/passwd"),
         says="app.yml: a symlink to /etc/passwd, outside the root"),
    case("plaintext vault file", *VARS, setup=write("vars/demo/dev/secrets.vault.yml", "pw: x\n"),
         says="secrets.vault.yml:1: not encrypted"),
    case("plaintext vault file, validate", "validate", "demo", "--offline",
         setup=write("vars/demo/dev/secrets.vault.yml", "pw: x\n"), says="not encrypted"),
    case("sandbox escape in a file", *VARS,
         setup=write(APP_YML, "# x\nmotd: \"{{ ''.__class__.__mro__[1].__subclasses__() }}\"\n"),
         says="app.yml:2: motd: Jinja sandbox"),
    case("1/0 in a file", *VARS, setup=write(APP_YML, "x: '{{ 1/0 }}'\n"),
         says="app.yml:1: x: Jinja: division by zero"),
    case("stray folder under vars", "validate", "--offline", setup=folder("vars/Bad_Folder"),
         says="vars/Bad_Folder: app name 'Bad_Folder' must match"),
    # -- render and templates ----------------------------------------------------------
    case("render --out a file", "render", "demo", "dev", "app", "--out", "/etc/hostname",
         says="exists and is not a folder"),
    case("missing template", "render", "demo", "dev", "app", "-e", "packer_template=nope",
         says="packer template 'nope' not found"),
    case("template 1/0", "render", "demo", "dev", "app", "-e", "packer_template=t",
         setup=write("packer/t.pkr.hcl.j2", "# a\n{{ 1/0 }}\n"),
         says="t.pkr.hcl.j2:2: Jinja: ZeroDivisionError"),
    case("template missing include", "render", "demo", "dev", "app", "-e", "packer_template=t",
         setup=write("packer/t.pkr.hcl.j2", "{% include 'gone.hcl' %}\n"),
         says="template 'gone.hcl' not found"),
    case("template binary", "render", "demo", "dev", "app", "-e", "packer_template=t",
         setup=write("packer/t.pkr.hcl.j2", b"\x89PNG\r\n\x1a\n\xff"), says="not UTF-8"),
    case("template sandbox", "render", "demo", "dev", "app", "-e", "packer_template=t",
         setup=write("packer/t.pkr.hcl.j2", "{{ packer_version.__class__ }}\n"),
         says="Jinja sandbox"),
    case("template syntax", "render", "demo", "dev", "app", "-e", "packer_template=t",
         setup=write("packer/t.pkr.hcl.j2", "{% if %}\n"), says="Jinja syntax"),
    case("template HCL", "render", "demo", "dev", "app", "-e", "packer_template=t",
         setup=write("packer/t.pkr.hcl", "variable {\n"), says="HCL syntax"),
    # -- validate ----------------------------------------------------------------------
    case("validate unknown app", "validate", "nope", "--offline", says="unknown app"),
    case("validate unknown env", "validate", "--env", "nope", "--offline", says="no env 'nope'"),
    case("validate -j 0", "validate", "-j", "0", says="Invalid value for"),
    case("validate -j -3", "validate", "-j", "-3", says="Invalid value for"),
    case("validate -j x", "validate", "-j", "x", says="Invalid value for"),
    # -- bake --------------------------------------------------------------------------
    case("bake without comp", "bake", "demo", "dev", says="give a COMP or --all"),
    case("bake comp and --all", "bake", "demo", "dev", "app", "--all",
         says="give a COMP or --all"),
    case("bake -j 0", "bake", "demo", "dev", "--all", "-j", "0", says="Invalid value for"),
    case("bake --keep-hours alone", "bake", "demo", "dev", "app", "--keep-hours", "2",
         says="--keep-hours goes with --keep-on-failure"),
    case("bake --keep-hours 0", "bake", "demo", "dev", "app", "--keep-on-failure",
         "--keep-hours", "0", says="Invalid value for"),
    case("bake unknown app", "bake", "nope", "dev", "app", says="unknown app"),
    case("bake bad config", "bake", "demo", "dev", "app", "-e", "aws_region=mars",
         says="a region like"),
    case("bake plaintext vault", "bake", "demo", "dev", "app",
         setup=write("vars/demo/dev/secrets.vault.yml", "pw: x\n"), says="not encrypted"),
    # -- release -----------------------------------------------------------------------
    case("release --ami garbage", "release", "demo", "dev", "app", "--ami", "zzz",
         says="no such AMI"),
    case("release --ami unknown", "release", "demo", "dev", "app", "--ami", "ami-00000000",
         says="no such AMI"),
    case("release another comp's AMI", "release", "demo", "dev", "app", "--ami",
         "{dev_worker}", says="is tagged for demo/dev/worker"),
    case("release another account's AMI", "release", "demo", "dev", "app", "--ami",
         "{staging_app}", says="no such AMI"),
    case("release an untagged AMI", "release", "demo", "dev", "app", "--ami", "{base}",
         says="no builder:app/env/comp tags"),
    case("release --timeout nan", "release", "demo", "dev", "app", "--timeout", "nan",
         says="--timeout: nan"),
    case("release --timeout inf", "release", "demo", "dev", "app", "--timeout", "inf",
         says="--timeout: inf"),
    case("release --timeout 0", "release", "demo", "dev", "app", "--timeout", "0",
         says="--timeout: 0"),
    case("release --timeout -5", "release", "demo", "dev", "app", "--timeout", "-5",
         says="--timeout: -5"),
    case("release --timeout a year", "release", "demo", "dev", "app", "--timeout", "525600",
         says="--timeout"),
    case("release --timeout text", "release", "demo", "dev", "app", "--timeout", "soon",
         says="Invalid value for"),
    case("release --revision http", "release", "demo", "dev", "app", "--revision",
         "http://x/y", says="expected s3://BUCKET/KEY"),
    case("release --revision --no-deploy", "release", "demo", "dev", "app", "--revision",
         "s3://b/k.zip", "--no-deploy", says="--revision needs a deployment"),
    case("release unknown env", "release", "demo", "nope", "app", says="unknown env"),
    case("release role of another account", "release", "demo", "dev", "app", "-e",
         "aws_role_arn=arn:aws:iam::222222222222:role/builder", says="a role of account"),
    case("release launch template missing", "release", "demo", "dev", "app", "--ami",
         "{dev_app}", "-e", "launch_template_name=nope", says="nope not found"),
    case("release with a broken vars file", "release", "demo", "dev", "app",
         setup=write(APP_YML, BOMB), says="once aliases"),
    # -- promote -----------------------------------------------------------------------
    case("promote --ami garbage", "promote", "demo", "app", "--to", "prod", "--ami", "zzz",
         says="not an AMI id"),
    case("promote --ami unknown", "promote", "demo", "app", "--to", "prod", "--ami",
         "ami-00000000", says="not found in staging"),
    case("promote unverified", "promote", "demo", "app", "--to", "prod", "--ami",
         "{staging_app}", says="not verified"),
    case("promote to an env without promote_from", "promote", "demo", "app", "--to", "dev",
         says="has no promote_from"),
    case("promote unknown env", "promote", "demo", "app", "--to", "nope", says="unknown env"),
    case("promote unknown comp", "promote", "demo", "nope", "--to", "prod",
         says="not in this env's components"),
    case("promote without --to", "promote", "demo", "app", says="Missing option '--to'"),
    case("promote broken source vars", "promote", "demo", "app", "--to", "prod",
         setup=write("vars/demo/staging/app.yml", "x: [\n"), says="staging/app.yml"),
    # -- reap --------------------------------------------------------------------------
    case("reap 9999999999d", "reap", "--older-than", "9999999999d", says="at most 3650 days"),
    case("reap 99999d", "reap", "--older-than", "99999d", says="at most 3650 days"),
    case("reap no unit", "reap", "--older-than", "5", says="expected a number and"),
    case("reap negative", "reap", "--older-than", "-5h", says="expected a number and"),
    case("reap fraction", "reap", "--older-than", "1.5h", says="expected a number and"),
    case("reap unicode digits", "reap", "--older-than", "٣h", says="expected a number and"),
    case("reap empty", "reap", "--older-than", "", says="expected a number and"),
    case("reap --run-id path", "reap", "--run-id", "../../etc", says="expected a bake's run id"),
    # -- prune -------------------------------------------------------------------------
    case("prune --keep 0", "prune", "demo", "dev", "app", "--keep", "0",
         says="Invalid value for"),
    case("prune --keep -1", "prune", "demo", "dev", "app", "--keep", "-1", "--yes",
         says="Invalid value for"),
    case("prune --keep x", "prune", "demo", "dev", "app", "--keep", "x",
         says="Invalid value for"),
    case("prune unknown app", "prune", "nope", "dev", "app", "--yes", says="unknown app"),
    case("prune bad config", "prune", "demo", "dev", "app", "--yes", "-e", "ami_keep=0",
         says="whole number"),
    # -- rebuild and status --------------------------------------------------------------
    case("rebuild unknown app", "rebuild", "nope", "--dry-run", says="unknown app"),
    case("rebuild unknown env", "rebuild", "--env", "nope", "--dry-run", says="no env 'nope'"),
    case("rebuild -j 0", "rebuild", "-j", "0", "--dry-run", says="Invalid value for"),
    case("rebuild -j -3", "rebuild", "-j", "-3", says="Invalid value for"),
    case("status unknown app", "status", "nope", says="unknown app"),
    case("status unknown env", "status", "--env", "nope", says="no env 'nope'"),
    # -- local ---------------------------------------------------------------------------
    case("local up --port 99999", "local", "up", "--port", "99999", says="Invalid value for"),
    case("local up --port 0", "local", "up", "--port", "0", says="Invalid value for"),
    case("local up --port -1", "local", "up", "--port", "-1", says="Invalid value for"),
    case("local up --port x", "local", "up", "--port", "x", says="Invalid value for"),
    case("local fail-next unknown app", "local", "fail-next-deployment", "nope", "dev", "app",
         says="unknown app"),
    case("local publish unknown env", "local", "publish-source-ami", "demo", "nope",
         says="unknown env"),
    case("local BUILDER_LOCAL_NO_BUILD_HOST", "local", "up",
         env={"BUILDER_LOCAL_NO_BUILD_HOST": "perhaps"}, says="BUILDER_LOCAL_NO_BUILD_HOST"),
]


def snapshot(project: Project) -> dict[str, Any]:
    """What a command could change, in every env's account and region."""
    state: dict[str, Any] = {}
    for env in ENVS:
        aws = project.env_aws(project.resolve("demo", env, "app"))
        ec2, asg, deploy = (aws.client(name) for name in ("ec2", "autoscaling", "codedeploy"))
        images = ec2.describe_images(Owners=["self"])["Images"]
        templates = ec2.describe_launch_templates()["LaunchTemplates"]
        state[env] = {
            "images": sorted((i["ImageId"], i["State"], sorted(
                (t["Key"], t["Value"]) for t in i.get("Tags", []))) for i in images),
            "shares": sorted((i["ImageId"], str(ec2.describe_image_attribute(
                ImageId=i["ImageId"], Attribute="launchPermission")["LaunchPermissions"]))
                for i in images),
            "snapshots": sorted(s["SnapshotId"] for s in
                                ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]),
            "template_versions": sorted(
                (v["LaunchTemplateName"], v["VersionNumber"], v["DefaultVersion"])
                for t in templates for v in ec2.describe_launch_template_versions(
                    LaunchTemplateId=t["LaunchTemplateId"])["LaunchTemplateVersions"]),
            "security_groups": sorted(g["GroupId"] for g in
                                      ec2.describe_security_groups()["SecurityGroups"]),
            "key_pairs": sorted(k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]),
            "tables": sorted(aws.client("dynamodb").list_tables()["TableNames"]),
            "asgs": sorted((g["AutoScalingGroupName"], str(g.get("LaunchTemplate")))
                           for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]),
            "deployments": sorted(deploy.list_deployments()["deployments"]),
        }
    return state


@pytest.fixture(scope="module")
def amis(local_stack: Project) -> dict[str, str]:
    """AMIs the cases name: one for dev/app, one for another comp, one in staging (not
    verified), and dev's untagged base image."""
    from builder.aws import images

    dev = local_stack.resolve("demo", "dev", "app")
    base = images.resolve_source(local_stack.env_aws(dev).client("ec2"), dev.settings)
    return {"dev_app": make_ami(local_stack, Combo("demo", "dev", "app")),
            "dev_worker": make_ami(local_stack, Combo("demo", "dev", "worker")),
            "staging_app": make_ami(local_stack, Combo("demo", "staging", "app")),
            "base": base.id}


@pytest.fixture(scope="module")
def before(local_stack: Project, amis: dict[str, str]) -> dict[str, Any]:
    return snapshot(local_stack)


@pytest.fixture
def undo_setup(local_stack: Project) -> Iterator[Callable[[], None]]:
    """Removes whatever a case's setup added under the root (also after the test)."""
    root = local_stack.root
    tracked = {path for path in root.rglob("*") if ".builder" not in path.parts}

    def undo() -> None:
        added = {p for p in root.rglob("*") if ".builder" not in p.parts} - tracked
        for path in sorted(added, key=lambda p: len(p.parts), reverse=True):
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                path.rmdir()

    yield undo
    undo()


def test_at_least_a_hundred_cases() -> None:
    assert len(CASES) >= 100
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("bad", CASES, ids=[c.name for c in CASES])
def test_bad_input(bad: Case, local_stack: Project, amis: dict[str, str],
                   before: dict[str, Any], undo_setup: Callable[[], None]) -> None:
    root = local_stack.root
    if bad.setup is not None:
        bad.setup(root)
    args = [arg.format(**amis) if "{" in arg and "}" in arg and arg.strip("{}") in amis
            else arg for arg in bad.args]
    env = {"BUILDER_ROOT": str(root), **bad.env}
    result = CliRunner().invoke(app, args, env=env, catch_exceptions=True)
    output = result.stdout + result.stderr
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output and "internal error" not in output, output
    assert result.exit_code == bad.code, output
    assert bad.says in output, output
    if bad.aws:
        undo_setup()  # the snapshot reads the vars too
        after = snapshot(local_stack)
        changed = {f"{env}.{kind}": (before[env][kind], after[env][kind])
                   for env in ENVS for kind in before[env]
                   if before[env][kind] != after[env][kind]}
        assert not changed, changed


def test_builder_local_accepts_the_usual_spellings(local_stack: Project) -> None:
    for value in ("1", "true", "TRUE", "yes", "Yes", "on"):
        result = CliRunner().invoke(app, ["local", "status", "--json"],
                                    env={"BUILDER_LOCAL": value,
                                         "BUILDER_ROOT": str(local_stack.root)})
        assert result.exit_code == 0, result.output
    for value in ("0", "false", "No", ""):
        result = CliRunner().invoke(app, ["status", "demo"],
                                    env={"BUILDER_LOCAL": value, "AWS_ACCESS_KEY_ID": "",
                                         "BUILDER_ROOT": str(local_stack.root),
                                         "AWS_CONFIG_FILE": os.devnull,
                                         "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
        assert "local stack" not in result.output  # real AWS: not the emulator
