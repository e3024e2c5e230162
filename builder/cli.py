"""The command line: options → one step → output and exit code (`_emit`, the one place
results leave); BuilderError → its exit code (`_Group.invoke`).

Heavy imports (boto3, ansible_runner, hcl2) happen inside the commands that need
them, so `builder --help` stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.exceptions import TyperException

from builder.errors import BuilderError, FileSystemError, InputError
from builder.strict import bounded_number, env_flag

if TYPE_CHECKING:
    from builder.bake.build import BakeResult
    from builder.batch import Failed
    from builder.output import Result
    from builder.project import Project

# Global options may come anywhere on the line (`builder bake demo dev app --local`):
# they are moved in front of the command before parsing.
_GLOBAL_FLAGS = {"--local", "--json", "-v", "-vv", "-vvv", "-vvvv", "--verbose"}
_GLOBAL_OPTIONS = {"--root", "-e", "--extra-var"}


def hoist_globals(args: list[str]) -> list[str]:
    """Move global options in front of the command so they may go anywhere on the line."""
    front: list[str] = []
    rest: list[str] = []
    items = iter(args)
    for arg in items:
        if arg == "--":
            rest += [arg, *items]
            break
        name, attached, _ = arg.partition("=")
        if arg in _GLOBAL_FLAGS or (attached and arg.startswith("--") and name in _GLOBAL_OPTIONS):
            front.append(arg)
        elif arg in _GLOBAL_OPTIONS:
            value = next(items, None)
            if value is None:  # moved in front, it would take the command's name as value
                raise typer.BadParameter("a value is required", param_hint=f"'{arg}'")
            front += [arg, value]
        else:
            rest.append(arg)
    return front + rest


class _Group(TyperGroup):
    """The top-level group: global options anywhere, BuilderError → one line and exit code."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_globals(list(args)))

    def invoke(self, ctx: Any) -> Any:
        """Expected errors: one line on stderr (all lines for several problems) and their
        exit code; the traceback only with -v."""
        try:
            try:
                if os.environ.get("BUILDER_CHECK_CALLS") != "1":
                    return super().invoke(ctx)
                # Under test (builder.aws.calls.CHECK_ENV; not imported above, as it loads
                # boto3): every AWS call of a command must be made in a step's name.
                from builder.aws.calls import RUNNING

                with RUNNING.strict():
                    return super().invoke(ctx)
            except OSError as exc:  # a file of the root or of .builder/: unwound already
                raise FileSystemError.of(exc) from exc
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except BuilderError as exc:
            _show_traceback(ctx)
            typer.echo(f"builder: {exc.format(Path.cwd())}", err=True)
            raise typer.Exit(exc.exit_code) from exc
        except Exception as exc:
            # Still one line, never a traceback (unless -v): a bug of ours, so exit 1.
            from builder.redact import redact

            _show_traceback(ctx)
            typer.echo(f"builder: internal error: {type(exc).__name__}: "
                       f"{redact(str(exc))[:200]} (run with -v for the traceback)", err=True)
            raise typer.Exit(1) from exc


def _show_traceback(ctx: Any) -> None:
    if isinstance(ctx.obj, Globals) and ctx.obj.verbose:
        import traceback

        from builder.redact import redact

        sys.stderr.write(redact(traceback.format_exc()))


class _Command(TyperCommand):
    """Help laid out as well-known tools do: `APP ENV [COMP]` in the usage line, arguments
    by name without type labels."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        params = self.get_params(ctx)
        arguments = [(_argument_name(p), getattr(p, "help", None) or "")
                     for p in params if p.param_type_name == "argument"]
        options = [record for p in params if p.param_type_name == "option"
                   if (record := p.get_help_record(ctx))]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _argument_name(param: Any) -> str:
    """An argument as help shows it: its metavar (APP), else its name in capitals."""
    return str(param.metavar or param.name or "").upper()


def _examples(*lines: str) -> str:
    """An "Examples" epilog; click's \\b marker keeps it from re-wrapping the lines."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


app = typer.Typer(
    cls=_Group,
    help="Bake, release and promote AMIs for apps on EC2 Auto Scaling groups.",
    epilog=_examples("builder validate                     # every combo, every problem",
                     "builder bake demo dev app --release  # bake (or reuse), then release",
                     "builder promote demo app --to prod",
                     "builder rebuild --dry-run --json     # what is stale, as a CI matrix")
    + "\n\nGlobal options may go anywhere on the line. Exit codes: 0 done (also nothing to "
    "do), 1 the operation failed, 2 bad input or config, 130 or 143 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help, as git or pip print it: no boxes, and it pastes into docs/cli.md.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
local_app = typer.Typer(
    help="Run the embedded AWS emulator and build host (local mode).",
    epilog=_examples("builder local up", "builder local status --json", "builder local down"),
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(local_app, name="local")
template_app = typer.Typer(
    help="Check your own Packer templates: what builder changes in them.",
    epilog=_examples("builder template check", "builder render demo dev app"),
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(template_app, name="template")


def _command(typer_app: typer.Typer, name: str,
             *examples: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a command with builder's help layout and its "Examples" epilog."""
    return typer_app.command(name, cls=_Command, epilog=_examples(*examples))


@dataclass
class Globals:
    """The global options, shared by every command through the click context."""

    root: str | None = None
    local: bool = False
    as_json: bool = False
    verbose: int = 0  # -v count: debug logs at 1; a bake's Ansible gets the same count
    overrides: dict[str, str] = field(default_factory=dict)
    allow_outside_root: bool = False

    def project(self) -> Project:
        from builder.project import Project

        if not self.local:
            return Project.open(self.root, overrides=self.overrides,
                                allow_outside_root=self.allow_outside_root)
        from builder.local.mode import LOCAL

        return Project.open(self.root, local_mode=LOCAL, overrides=self.overrides,
                            allow_outside_root=self.allow_outside_root)


@app.callback()
def _globals(
    ctx: typer.Context,
    root: Annotated[str | None, typer.Option(
        "--root", metavar="DIR", help="Infra repo (default: BUILDER_ROOT, else the nearest "
        "folder upward with vars/)")] = None,
    local: Annotated[bool, typer.Option("--local", help="Use the local emulator and build host "
                                        "(or BUILDER_LOCAL=1)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout")] = False,
    verbose: Annotated[int, typer.Option(
        "-v", "--verbose", count=True, help="Debug logs and tracebacks; a bake passes "
        "-v/-vv/-vvv on to Ansible")] = 0,
    extra: Annotated[list[str] | None, typer.Option("-e", "--extra-var", metavar="KEY=VALUE",
                                                    help="Override a var (top layer)")] = None,
    allow_outside_root: Annotated[bool, typer.Option(
        "--allow-outside-root", help="Let vars layers be symlinks to files outside the root "
        "(or BUILDER_ALLOW_OUTSIDE_ROOT=1)")] = False,
) -> None:
    overrides: dict[str, str] = {}
    for item in extra or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"-e {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = value
    ctx.obj = Globals(root, local or env_flag("BUILDER_LOCAL"), as_json, verbose, overrides,
                      allow_outside_root or env_flag("BUILDER_ALLOW_OUTSIDE_ROOT"))
    if verbose:
        from builder.redact import install

        handler = install(logging.StreamHandler(sys.stderr))
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s",
                            handlers=[handler])


def _g(ctx: typer.Context) -> Globals:
    obj = ctx.find_root().obj
    assert isinstance(obj, Globals)
    return obj


def _using_stack(project: Project, command: str) -> AbstractContextManager[None]:
    """In local mode, mark the command as running on this root's local stack (so `local
    down` won't stop it from under the command)."""
    if not project.local:
        return nullcontext()
    from builder.local.state import command_running

    return command_running(project.layout, command)


def _emit(ctx: typer.Context, result: Result) -> None:
    """Show the command's result, and exit with its code when it reports a failure."""
    from builder.output import emit

    emit(result, as_json=_g(ctx).as_json)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


App = Annotated[str, typer.Argument(metavar="APP", help="App (a folder under vars/)")]
Env = Annotated[str, typer.Argument(metavar="ENV", help="Environment (a folder under vars/APP/)")]
Comp = Annotated[str, typer.Argument(metavar="COMP", help="Component (in the env's components)")]
AllApps = Annotated[str | None, typer.Argument(metavar="APP", help="App (default: all)")]
OnlyEnv = Annotated[str | None, typer.Option("--env", metavar="ENV", help="Only this env")]
LockWait = Annotated[float, typer.Option(
    "--lock-wait", metavar="SECONDS", help="Wait this long for another run holding the "
    "comp's lock (default: fail at once, saying who holds it)")]
Region = Annotated[str | None, typer.Option(
    "--region", metavar="REGION", help="Only this region of a multi-region env (default: "
    "every region)")]


@_command(app, "vars",
          "builder vars demo prod app           # key, value and origin",
          "builder vars demo prod app --json    # {app, env, comp, vars, origins}",
          "builder vars demo dev app -e instance_type=t3.large")
def vars_command(ctx: typer.Context, app_name: App, env: Env, comp: Comp) -> None:
    """Show a comp's resolved vars, each with its file:line.

    Layers apply lowest first: builder's defaults (`builder keys`), vars/APP/common/,
    vars/APP/ENV/, then -e KEY=VALUE.
    """
    _emit(ctx, _g(ctx).project().resolve(app_name, env, comp))


@_command(app, "render",
          "builder render demo dev app",
          "builder render demo dev app --out /tmp/demo-dev-app")
def render_command(
    ctx: typer.Context, app_name: App, env: Env, comp: Comp,
    out: Annotated[Path | None, typer.Option("--out", metavar="DIR", help="Output folder "
                                             "(default .builder/render/APP/ENV/COMP)")] = None,
) -> None:
    """Write a comp's rendered Packer template, var file and vars.

    The template is validated as HCL; the var file holds only the variables it declares.
    """
    from builder.render.template import write

    if out is not None and out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    project = _g(ctx).project()
    rendered = project.renderer.render(project.resolve(app_name, env, comp))
    folder = out or project.layout.state_dir / "render" / app_name / env / comp
    _emit(ctx, write(rendered, folder.resolve()))


@_command(app, "validate",
          "builder validate                           # every app, env and comp",
          "builder validate demo --env prod --offline --json")
def validate_command(
    ctx: typer.Context,
    app_name: AllApps = None,
    env: OnlyEnv = None,
    comp: Annotated[str | None, typer.Option("--comp", metavar="COMP", help="Only this comp")
                    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Skip packer validate and the "
                                          "Ansible syntax check")] = False,
    jobs: Annotated[int, typer.Option("-j", "--jobs", metavar="N", min=1,
                                      help="External checks in parallel")] = 2,
    vault_password_file: Annotated[Path | None, typer.Option(
        "--vault-password-file", metavar="FILE", help="Open vault files for the syntax check "
        "(or BUILDER_VAULT_PASSWORD_FILE, or the vault_password_ssm_parameter var)")] = None,
) -> None:
    """Check every (app, env, comp) and report every problem.

    Config, render, HCL, `packer validate` and the Ansible syntax check; exit 2 if any
    problem is found.
    """
    from builder.pipelines.validate import validate

    _emit(ctx, validate(_g(ctx).project(), app_name, env, comp, offline=offline, jobs=jobs,
                        verbose=_g(ctx).verbose > 0, vault_password_file=vault_password_file))


@_command(template_app, "check",
          "builder template check",
          "builder template check golden --json")
def template_check_command(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Template name under packer/ "
                                               "(default: every template the combos use)")
                    ] = None,
) -> None:
    """Show what builder changes in templates and what it refuses.

    Each change in file order and each refusal with its file:line; exit 2 if a template
    can't be used. `render` writes the adapted copy.
    """
    from builder.pipelines.templates import check

    _emit(ctx, check(_g(ctx).project(), name))


@_command(app, "bake",
          "builder bake demo dev app",
          "builder bake demo dev --all -j 2            # every comp of the env",
          "builder bake demo staging app --vault-password-file ~/.vault-pass --force",
          "builder bake demo dev app --release         # then release it",
          "builder bake demo dev app --keep-on-failure # a failed task keeps the host")
def bake_command(
    ctx: typer.Context, app_name: App, env: Env,
    comp: Annotated[str | None, typer.Argument(help="Component (or --all)")] = None,
    all_comps: Annotated[bool, typer.Option("--all", help="Every comp of the env, in parallel")
                         ] = False,
    jobs: Annotated[int | None, typer.Option("-j", "--jobs", metavar="N", min=1,
                                             help="Parallel bakes "
                                             "with --all (default: comps, at most 4)")] = None,
    force: Annotated[bool, typer.Option("--force", help="Bake even if an AMI with the same "
                                        "fingerprint exists")] = False,
    vault_password_file: Annotated[Path | None, typer.Option(
        "--vault-password-file", metavar="FILE", help="Ansible vault password (or "
        "BUILDER_VAULT_PASSWORD_FILE, or the vault_password_ssm_parameter var)")] = None,
    release_after: Annotated[bool, typer.Option(
        "--release", help="Then release each baked (or unchanged) AMI, as `builder release` "
        "does")] = False,
    lock_wait: LockWait = 0,
    break_lock: Annotated[bool, typer.Option(
        "--break-lock", help="Take the comp's bake lock even if another bake holds it (when "
        "that one is gone)")] = False,
    ansible_tags: Annotated[list[str] | None, typer.Option(
        "--ansible-tags", metavar="TAGS", help="Run only these tags of the comp's playbook "
        "(comma-separated or repeated; part of the fingerprint)")] = None,
    ansible_skip_tags: Annotated[list[str] | None, typer.Option(
        "--ansible-skip-tags", metavar="TAGS", help="Skip these tags of the comp's playbook "
        "(part of the fingerprint)")] = None,
    diff: Annotated[bool, typer.Option("--diff", help="Show Ansible's diffs of changed "
                                       "files")] = False,
    keep_on_failure: Annotated[bool, typer.Option(
        "--keep-on-failure", help="After a failed Ansible task or image check, keep the "
        "build instance running to debug it and print how to reach it over SSH")] = False,
    keep_hours: Annotated[float | None, typer.Option(
        "--keep-hours", metavar="N", show_default=False, min=0.01, max=24 * 30,
        help="With --keep-on-failure: hours until `builder reap` removes the kept host "
        "(default: 24)")] = None,
) -> None:
    """Bake a comp's AMI (skipped when nothing changed).

    An AMI whose fingerprint matches every input (template, vars, playbook and roles,
    base image) is reused unless --force.
    One bake of a comp at a time: a second one waits (--lock-wait) or fails saying whose
    bake runs.
    """
    from builder.bake.build import BakeOptions, bake, bake_all
    from builder.config.models import Combo
    from builder.interrupts import Cancel, handle_signals
    from builder.output import Progress
    from builder.provision.ansible import AnsibleOptions

    if (comp is None) == (not all_comps):
        raise InputError("give a COMP or --all (not both)")
    if keep_hours is not None and not keep_on_failure:
        raise InputError("--keep-hours goes with --keep-on-failure")
    project = _g(ctx).project()
    ansible = AnsibleOptions(_tags(ansible_tags), _tags(ansible_skip_tags), diff,
                             _g(ctx).verbose)
    options = BakeOptions(force=force, vault_password_file=vault_password_file,
                          lock_wait_s=lock_wait, break_lock=break_lock, ansible=ansible,
                          keep_hours=(keep_hours or 24.0) if keep_on_failure else None)
    progress = Progress()
    result: Result
    outcomes: Sequence[BakeResult | Failed]
    with handle_signals(Cancel()) as cancel, _using_stack(project, f"bake {app_name} {env}"):
        if comp is not None:
            baked = bake(project, Combo(app_name, env, comp), options=options,
                         progress=progress, cancel=cancel)
            result, outcomes = baked, (baked,)
        else:
            batch = bake_all(project, app_name, env, jobs=jobs, options=options,
                             progress=progress, cancel=cancel)
            result, outcomes = batch, batch.outcomes
        if release_after:  # one report per comp; exit 1 (2) if any bake or release failed
            from builder.pipelines.bake_release import release_baked

            result = release_baked(project, outcomes, progress=progress, cancel=cancel)
    _emit(ctx, result)


def _tags(given: list[str] | None) -> tuple[str, ...]:
    """`--ansible-tags a,b --ansible-tags c` as Ansible's list of tags."""
    return tuple(t.strip() for item in given or [] for t in item.split(",") if t.strip())


@_command(app, "release",
          "builder release demo dev app               # the newest usable AMI",
          "builder release demo prod app --ami ami-0abc1234 --json",
          "builder release demo dev app --no-deploy   # launch template only",
          "builder release demo dev app --no-wait --timeout 45")
def release_command(
    ctx: typer.Context, app_name: App, env: Env, comp: Comp,
    ami: Annotated[str | None, typer.Option(
        "--ami", metavar="ID", help="The AMI (default: the newest baked, released or verified "
        "AMI of the comp in the env's account)")] = None,
    revision: Annotated[str | None, typer.Option(
        "--revision", metavar="s3://BUCKET/KEY", help="Deploy this revision (default: the "
        "deployment group's current target revision)")] = None,
    no_deploy: Annotated[bool, typer.Option(
        "--no-deploy", help="Only the launch template (the AMI is tagged released)")] = False,
    no_wait: Annotated[bool, typer.Option(
        "--no-wait", help="Return once the deployment is created: not verified, lock released; "
        "releasing the same AMI again follows it to the end")] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", metavar="MIN", show_default=False, help="Minutes to wait for the "
        "deployment before stopping it and rolling back (default: 30)")] = 30.0,
    break_lock: Annotated[bool, typer.Option(
        "--break-lock", help="Take the release lock even if another release holds it (when "
        "that one is gone)")] = False,
    lock_wait: LockWait = 0,
    region: Region = None,
) -> None:
    """Put an AMI on a comp's fleet with a blue/green deployment.

    A new launch-template version becomes the default and CodeDeploy deploys it
    blue/green. Failed, stopped or timed out: the launch template and the Auto Scaling
    group go back and the AMI is tagged failed. A multi-region env releases in each of
    its regions at once (--ami names the bake region's AMI; the others release its copy).
    """
    from builder.config.models import Combo
    from builder.interrupts import Cancel, handle_signals
    from builder.output import Progress
    from builder.release.regions import release

    bounded_number(timeout, "--timeout", maximum=7 * 24 * 60)
    project = _g(ctx).project()
    with handle_signals(Cancel()) as cancel, _using_stack(project, f"release {app_name} {env}"):
        _emit(ctx, release(project, Combo(app_name, env, comp), ami_id=ami, revision=revision,
                           deploy=not no_deploy, wait=not no_wait, timeout_min=timeout,
                           break_lock=break_lock, lock_wait_s=lock_wait, region=region,
                           progress=Progress(), cancel=cancel))


@_command(app, "reap",
          "builder reap                               # older than 2h",
          "builder reap --older-than 30m --dry-run",
          "builder reap --run-id 3f9c2a7b1d04           # a kept build host, now")
def reap_command(
    ctx: typer.Context,
    older_than: Annotated[str | None, typer.Option(
        "--older-than", metavar="AGE", help="Also what runs started longer ago than this "
        "(30m, 2h, 1d) left; default 4h, longer than a live run holds anything")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list")] = False,
    run_id: Annotated[str | None, typer.Option(
        "--run-id", metavar="RUN", help="Also remove the build host this run kept for "
        "debugging (bake --keep-on-failure), before its time")] = None,
) -> None:
    """Remove what crashed runs left behind.

    Instances, key pairs, security groups, incomplete AMIs and their snapshots, Packer's
    temporary AMIs, promotions' shares and KMS grants, local build hosts and private temp
    folders, in every account and region the repo's envs use. A run's leftovers go at
    once when its process on this host is gone. A build host kept for debugging is only
    listed until its kept-until time (then removed, with its key file).
    """
    from builder.pipelines.reap import DEFAULT_AGE, check_run_id, parse_age, reap

    age = parse_age(older_than) if older_than is not None else DEFAULT_AGE
    release_run = check_run_id(run_id) if run_id is not None else None
    _emit(ctx, reap(_g(ctx).project(), age, dry_run=dry_run, release_run=release_run))


@_command(app, "promote",
          "builder promote demo app --to prod         # what staging's launch template runs",
          "builder promote demo app --to prod --ami ami-0123456789abcdef0 --no-deploy")
def promote_command(
    ctx: typer.Context, app_name: App, comp: Comp,
    to_env: Annotated[str, typer.Option("--to", metavar="ENV", help="The env to promote to "
                                        "(it takes from its promote_from env)")],
    ami: Annotated[str | None, typer.Option(
        "--ami", metavar="ID", help="The source env's AMI (default: what its launch template "
        "launches); it must be verified there")] = None,
    no_deploy: Annotated[bool, typer.Option(
        "--no-deploy", help="Copy (or rebake) and tag only; no release in the target "
        "env")] = False,
    break_lock: Annotated[bool, typer.Option(
        "--break-lock", help="Take the target comp's lock even if another promotion or "
        "release holds it (when that one is gone)")] = False,
    lock_wait: LockWait = 0,
    region: Region = None,
) -> None:
    """Copy the source env's verified AMI into an env and release it.

    The AMI verified in the promote_from env of ENV is copied into ENV's account and
    region, re-encrypted and tagged with its lineage. Every permission is checked first
    and what is missing is named (exit 2); an AMI not verified in the source env is
    refused (exit 2). A copy into another partition (China, GovCloud) is refused (exit
    2); with `promote_by: rebake` ENV bakes its own AMI from the same inputs instead,
    checked by fingerprint.
    """
    from builder.interrupts import Cancel, handle_signals
    from builder.output import Progress
    from builder.pipelines.promote import promote

    project = _g(ctx).project()
    with handle_signals(Cancel()) as cancel, _using_stack(project, f"promote {app_name}"):
        _emit(ctx, promote(project, app_name, comp, to_env, ami_id=ami, deploy=not no_deploy,
                           break_lock=break_lock, lock_wait_s=lock_wait, region=region,
                           progress=Progress(), cancel=cancel))


@_command(app, "rebuild",
          "builder rebuild --dry-run                  # the plan, with a reason per comp",
          "builder rebuild --dry-run --json           # the plan as a CI matrix",
          "builder rebuild demo --env staging --release -j 4")
def rebuild_command(
    ctx: typer.Context,
    app_name: AllApps = None,
    env: OnlyEnv = None,
    release_after: Annotated[bool, typer.Option(
        "--release", help="Release what is baked, and deploy what is promoted")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Only the plan (with --json: a list usable as a CI matrix)")] = False,
    jobs: Annotated[int | None, typer.Option("-j", "--jobs", metavar="N", min=1,
                                             help="Parallel bakes "
                                             "(default: at most 4)")] = None,
) -> None:
    """Bake what is stale and promote what is newly verified.

    Stale: a newer base image, changed inputs, or older than rebuild_max_age_days. Envs
    with promote_from take what their source env has verified since. Exit 1 if anything
    failed.
    """
    from builder.interrupts import Cancel, handle_signals
    from builder.output import Progress
    from builder.pipelines.rebuild import rebuild

    project = _g(ctx).project()
    with handle_signals(Cancel()) as cancel, _using_stack(project, "rebuild"):
        report = rebuild(project, app_name, env, release=release_after, dry_run=dry_run,
                         jobs=jobs, progress=Progress(), cancel=cancel)
    _emit(ctx, report)


@_command(app, "prune",
          "builder prune demo staging app             # the plan, with reasons",
          "builder prune demo staging app --keep 3 --yes")
def prune_command(
    ctx: typer.Context, app_name: App, env: Env, comp: Comp,
    keep: Annotated[int | None, typer.Option("--keep", metavar="N", min=1, help="Newest AMIs to "
                                             "keep (default: ami_keep)")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really deregister and delete the "
                                      "snapshots (default: only show the plan)")] = False,
    break_lock: Annotated[bool, typer.Option(
        "--break-lock", help="With --yes: take the comp's lock even if a release or "
        "promotion holds it (when that one is gone)")] = False,
    lock_wait: LockWait = 0,
) -> None:
    """Deregister a comp's old AMIs that nothing uses.

    Keeps the newest --keep, every AMI still referenced by a launch template, an Auto
    Scaling group, an instance, a deployment or a share, and anything incomplete; only
    --yes deletes, under the comp's lock.
    """
    from builder.output import Progress
    from builder.pipelines.prune import prune

    _emit(ctx, prune(_g(ctx).project(), app_name, env, comp, keep=keep, yes=yes,
                     break_lock=break_lock, lock_wait_s=lock_wait, progress=Progress()))


@_command(app, "status",
          "builder status",
          "builder status demo --env prod --json",
          "builder status --html status.html     # the lineage page")
def status_command(
    ctx: typer.Context,
    app_name: AllApps = None,
    env: OnlyEnv = None,
    html: Annotated[Path | None, typer.Option(
        "--html", metavar="FILE", help="Write the lineage page (one self-contained HTML "
        "file) to FILE instead of showing the table")] = None,
) -> None:
    """Show what each comp runs and whether a rebuild is due.

    Per comp: the AMI on the launch template's default, its age and status, its base
    image and a newer one, what is due and why, and the last deployment. With --html:
    a page per app of env x comp with each AMI's chain (base image, bake, promoted
    copies, linked row to row) and package counts.
    """
    from builder.pipelines.status import status

    if html is not None and (html.is_dir() or not html.parent.is_dir()):
        raise InputError(f"--html {html}: " + ("is a folder" if html.is_dir() else
                                               f"no folder {html.parent}"))
    report = status(_g(ctx).project(), app_name, env)
    if html is None:
        _emit(ctx, report)
        return
    from builder.pipelines.status_page import write_page

    _emit(ctx, write_page(report, html))


@_command(app, "diff",
          "builder diff ami-0123456789abcdef0 ami-0fedcba9876543210",
          "builder diff demo prod app          # what runs vs the newest baked AMI",
          "builder diff demo prod app --json")
def diff_command(
    ctx: typer.Context,
    targets: Annotated[list[str], typer.Argument(
        metavar="A B | APP ENV COMP", help="Two AMI ids of one env (before, after), or a "
        "comp: what its launch template runs vs its newest baked AMI")],
) -> None:
    """Show what changed between two AMIs: packages and bake inputs.

    Packages added, removed, upgraded and downgraded (Debian version order), from each
    bake's packages.json, and the bake inputs that changed (template, vars, files by
    path, vault files, base image), from each bake's fingerprint.json. Both are read from
    .builder/builds/ by the AMIs' builder:build-id tags: an AMI baked elsewhere or before
    builder recorded packages has none (exit 2).
    """
    from builder.pipelines.diff import diff

    project = _g(ctx).project()
    if len(targets) == 2:
        _emit(ctx, diff(project, ami_ids=(targets[0], targets[1])))
    elif len(targets) == 3:
        _emit(ctx, diff(project, combo=(targets[0], targets[1], targets[2])))
    else:
        raise InputError("builder diff: give two AMI ids (A B), or APP ENV COMP")


@_command(app, "iam-policy",
          "builder iam-policy demo --env prod",
          "builder iam-policy --for bake --for release --format terraform")
def iam_policy_command(
    ctx: typer.Context,
    app_name: AllApps = None,
    env: OnlyEnv = None,
    for_: Annotated[list[str] | None, typer.Option(
        "--for", metavar="COMMAND", help="bake, release, promote, prune, reap, status, "
        "rebuild, doctor or all (repeatable; default all)")] = None,
    output_format: Annotated[str, typer.Option(
        "--format", metavar="FORMAT", help="json (policy documents) or terraform "
        "(aws_iam_policy_document data sources)")] = "json",
    ci_principal: Annotated[str | None, typer.Option(
        "--ci-principal", metavar="ARN", help="Who assumes the env roles (the CI role); "
        "default: the env account's own principals")] = None,
) -> None:
    """Print the IAM policies each env account's builder role needs.

    Made from the calls table: the role's policy, its trust policy (who may assume it),
    the KMS key-policy statements promotion needs, and the CI principal's policy.
    """
    from builder.pipelines.access import iam_policy

    if output_format not in ("json", "terraform"):
        raise InputError(f"--format {output_format}: json or terraform")
    _emit(ctx, iam_policy(_g(ctx).project(), app_name, env, for_=for_ or ["all"],
                          terraform=output_format == "terraform", ci_principal=ci_principal))


@_command(app, "doctor",
          "builder doctor",
          "builder doctor demo --env prod")
def doctor_command(
    ctx: typer.Context,
    app_name: AllApps = None,
    env: OnlyEnv = None,
) -> None:
    """Check each env's credentials, role and policies before a bake.

    The credentials are the account's, the role can be assumed, and its policies allow
    what `builder iam-policy` lists; exit 2, with the statements to add, when not.
    """
    from builder.pipelines.access import doctor

    _emit(ctx, doctor(_g(ctx).project(), app_name, env))


@_command(app, "keys", "builder keys", "builder keys --json")
def keys_command(ctx: typer.Context) -> None:
    """List the keys builder reads from the vars, with defaults."""
    from builder.config.keys import KeyList

    _emit(ctx, KeyList())


@_command(local_app, "up",
          "builder local up",
          "builder local up --port 5000 --no-build-host")
def local_up_command(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(
        "--port", metavar="PORT", min=1, max=65535,
        help="Emulator port on 127.0.0.1 (default: a free one)")
    ] = None,
    no_build_host: Annotated[bool, typer.Option(
        "--no-build-host", help="Skip the build host image (or BUILDER_LOCAL_NO_BUILD_HOST=1)"
    )] = False,
    enforce_iam: Annotated[bool, typer.Option(
        "--enforce-iam", help="Attach `builder iam-policy`'s policies to each env's role and "
        "enforce IAM in the emulator (or BUILDER_LOCAL_ENFORCE_IAM=1)")] = False,
) -> None:
    """Start the emulator, resources and build host image.

    Idempotent: a running emulator is reused and only what is missing is made.
    """
    from builder.local.stack import up
    from builder.output import Progress

    _emit(ctx, up(_g(ctx).project(), port, progress=Progress(),
                  build_host=False if no_build_host else None,
                  enforce_iam=True if enforce_iam else None))


@_command(local_app, "down", "builder local down", "builder local down --force")
def local_down_command(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option(
        "--force", help="Stop even while a bake or release of this root runs (it fails)")
    ] = False,
) -> None:
    """Stop the emulator and this root's build hosts.

    Not while a bake or release of this root uses them, unless --force.
    """
    from builder.local.stack import down

    _emit(ctx, down(_g(ctx).project().layout, force=force))


@_command(local_app, "reset", "builder local reset",
          "builder local reset --force && builder local up")
def local_reset_command(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option(
        "--force", help="Stop even while a bake or release of this root runs (it fails)")
    ] = False,
) -> None:
    """Stop the stack and forget what it holds.

    The saved emulator state and the local images go, so the next `builder local up`
    starts empty. Not while a bake or release of this root uses the stack, unless --force.
    """
    from builder.local.stack import reset

    _emit(ctx, reset(_g(ctx).project().layout, force=force))


@_command(local_app, "status", "builder local status", "builder local status --json")
def local_status_command(ctx: typer.Context) -> None:
    """Show the emulator's endpoint and resources.

    Whether it runs, its endpoint, and the resources per account and region.
    """
    from builder.local.stack import status

    _emit(ctx, status(_g(ctx).project().layout))


@_command(local_app, "fail-next-deployment", "builder local fail-next-deployment demo dev app")
def local_fail_next_command(ctx: typer.Context, app_name: App, env: Env, comp: Comp,
                            region: Region = None) -> None:
    """Make the comp's next deployment fail (for tests)."""
    from builder.local.stack import fail_next_deployment

    _emit(ctx, fail_next_deployment(_g(ctx).project(), app_name, env, comp, region))


@_command(local_app, "fail-next-refresh", "builder local fail-next-refresh demo prod app")
def local_fail_next_refresh_command(ctx: typer.Context, app_name: App, env: Env,
                                    comp: Comp) -> None:
    """Make the comp's next instance refresh fail (tests).

    It fails after its first batch and, with AutoRollback, puts the old instances back.
    """
    from builder.local.stack import fail_next_refresh

    _emit(ctx, fail_next_refresh(_g(ctx).project(), app_name, env, comp))


@_command(local_app, "publish-source-ami", "builder local publish-source-ami demo dev",
          "builder local publish-source-ami demo dev --with-package demo-tool=1.1")
def local_publish_source_ami_command(
    ctx: typer.Context, app_name: App, env: Env,
    with_package: Annotated[str | None, typer.Option(
        "--with-package", metavar="NAME=VERSION",
        help="Install a small package of this name and version in the new image (its "
             "layer of the build host), as an OS update would; a later image with a "
             "higher version upgrades it")] = None,
) -> None:
    """Publish a newer base image (as OS updates do).

    The image matches the env's source_ami_filter, so `rebuild` sees it as due. It keeps
    the packages the image it replaces was given; --with-package adds or upgrades one.
    """
    from builder.local.resources import publish_source_ami

    package = None
    if with_package is not None:
        name, equals, version = with_package.partition("=")
        if not equals:
            raise InputError(f"--with-package {with_package}: expected NAME=VERSION")
        package = (name, version)
    _emit(ctx, publish_source_ami(_g(ctx).project(), app_name, env, package))


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`builder`, `python -m builder`)."""
    try:
        app(args=sys.argv[1:] if argv is None else argv, prog_name="builder")
    except KeyboardInterrupt:
        sys.stderr.write("builder: interrupted\n")
        sys.exit(130)
