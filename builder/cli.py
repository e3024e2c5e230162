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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from builder.errors import BuilderError, InputError

if TYPE_CHECKING:
    from builder.bake.build import BakeResult
    from builder.batch import Failed
    from builder.output import Result
    from builder.project import Project

# Global options may come anywhere on the line (`builder bake demo dev app --local`):
# they are moved in front of the command before parsing.
_GLOBAL_FLAGS = {"--local", "--json", "-v", "--verbose"}
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
            return super().invoke(ctx)
        except BuilderError as exc:
            if isinstance(ctx.obj, Globals) and ctx.obj.verbose:
                import traceback

                traceback.print_exc()
            typer.echo(f"builder: {exc.format(Path.cwd())}", err=True)
            raise typer.Exit(exc.exit_code) from exc


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
    verbose: bool = False
    overrides: dict[str, str] = field(default_factory=dict)

    def project(self) -> Project:
        from builder.project import Project

        if not self.local:
            return Project.open(self.root, overrides=self.overrides)
        from builder.local.mode import LOCAL

        return Project.open(self.root, local_mode=LOCAL, overrides=self.overrides)


@app.callback()
def _globals(
    ctx: typer.Context,
    root: Annotated[str | None, typer.Option(
        "--root", metavar="DIR", help="Infra repo (default: BUILDER_ROOT, else the nearest "
        "folder upward with vars/)")] = None,
    local: Annotated[bool, typer.Option("--local", help="Use the local emulator and build host "
                                        "(or BUILDER_LOCAL=1)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Debug logs and tracebacks")
                       ] = False,
    extra: Annotated[list[str] | None, typer.Option("-e", "--extra-var", metavar="KEY=VALUE",
                                                    help="Override a var (top layer)")] = None,
) -> None:
    overrides: dict[str, str] = {}
    for item in extra or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"-e {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = value
    ctx.obj = Globals(root, local or os.environ.get("BUILDER_LOCAL") == "1", as_json, verbose,
                      overrides)
    if verbose:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(message)s")


def _g(ctx: typer.Context) -> Globals:
    obj = ctx.find_root().obj
    assert isinstance(obj, Globals)
    return obj


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
    jobs: Annotated[int, typer.Option("-j", "--jobs", metavar="N",
                                      help="External checks in parallel")] = 2,
) -> None:
    """Check every (app, env, comp) and report every problem.

    Config, render, HCL, `packer validate` and the Ansible syntax check; exit 2 if any
    problem is found.
    """
    from builder.pipelines.validate import validate

    _emit(ctx, validate(_g(ctx).project(), app_name, env, comp, offline=offline, jobs=jobs))


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
          "builder bake demo dev app --release         # then release it")
def bake_command(
    ctx: typer.Context, app_name: App, env: Env,
    comp: Annotated[str | None, typer.Argument(help="Component (or --all)")] = None,
    all_comps: Annotated[bool, typer.Option("--all", help="Every comp of the env, in parallel")
                         ] = False,
    jobs: Annotated[int | None, typer.Option("-j", "--jobs", metavar="N", help="Parallel bakes "
                                             "with --all (default: comps, at most 4)")] = None,
    force: Annotated[bool, typer.Option("--force", help="Bake even if an AMI with the same "
                                        "fingerprint exists")] = False,
    vault_password_file: Annotated[Path | None, typer.Option(
        "--vault-password-file", metavar="FILE", help="Ansible vault password (or "
        "BUILDER_VAULT_PASSWORD_FILE, or the vault_password_ssm_parameter var)")] = None,
    release_after: Annotated[bool, typer.Option(
        "--release", help="Then release each baked (or unchanged) AMI, as `builder release` "
        "does")] = False,
) -> None:
    """Bake a comp's AMI (skipped when nothing changed).

    An AMI whose fingerprint matches every input (template, vars, playbook and roles,
    base image) is reused unless --force.
    """
    from builder.bake.build import BakeOptions, bake, bake_all
    from builder.config.models import Combo
    from builder.interrupts import Cancel, handle_signals
    from builder.output import Progress

    if (comp is None) == (not all_comps):
        raise InputError("give a COMP or --all (not both)")
    project = _g(ctx).project()
    options = BakeOptions(force=force, vault_password_file=vault_password_file)
    progress = Progress()
    result: Result
    outcomes: Sequence[BakeResult | Failed]
    with handle_signals(Cancel()) as cancel:
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
) -> None:
    """Put an AMI on a comp's fleet with a blue/green deployment.

    A new launch-template version becomes the default and CodeDeploy deploys it
    blue/green. Failed, stopped or timed out: the launch template and the Auto Scaling
    group go back and the AMI is tagged failed.
    """
    from builder.config.models import Combo
    from builder.interrupts import Cancel, handle_signals
    from builder.output import Progress
    from builder.release.release import release

    project = _g(ctx).project()
    with handle_signals(Cancel()) as cancel:
        _emit(ctx, release(project, Combo(app_name, env, comp), ami_id=ami, revision=revision,
                           deploy=not no_deploy, wait=not no_wait, timeout_min=timeout,
                           break_lock=break_lock, progress=Progress(), cancel=cancel))


@_command(app, "reap",
          "builder reap                               # older than 2h",
          "builder reap --older-than 30m --dry-run")
def reap_command(
    ctx: typer.Context,
    older_than: Annotated[str, typer.Option("--older-than", metavar="AGE", help="Only what is "
                                            "older (30m, 2h, 1d)")] = "2h",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list")] = False,
) -> None:
    """Remove what crashed bakes left behind.

    Instances, key pairs and security groups tagged builder:run-id, in every account and
    region the repo's envs use.
    """
    from builder.pipelines.reap import parse_age, reap

    _emit(ctx, reap(_g(ctx).project(), parse_age(older_than), dry_run=dry_run))


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
        "--no-deploy", help="Copy and tag only; no release in the target env")] = False,
) -> None:
    """Copy the source env's verified AMI into an env and release it.

    The AMI verified in the promote_from env of ENV is copied into ENV's account and
    region, re-encrypted and tagged with its lineage. Every permission is checked first
    and what is missing is named (exit 2); an AMI not verified in the source env is
    refused (exit 2).
    """
    from builder.interrupts import Cancel, handle_signals
    from builder.output import Progress
    from builder.pipelines.promote import promote

    project = _g(ctx).project()
    with handle_signals(Cancel()) as cancel:
        _emit(ctx, promote(project, app_name, comp, to_env, ami_id=ami, deploy=not no_deploy,
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
    jobs: Annotated[int | None, typer.Option("-j", "--jobs", metavar="N", help="Parallel bakes "
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
    with handle_signals(Cancel()) as cancel:
        report = rebuild(project, app_name, env, release=release_after, dry_run=dry_run,
                         jobs=jobs, progress=Progress(), cancel=cancel)
    _emit(ctx, report)


@_command(app, "prune",
          "builder prune demo staging app             # the plan, with reasons",
          "builder prune demo staging app --keep 3 --yes")
def prune_command(
    ctx: typer.Context, app_name: App, env: Env, comp: Comp,
    keep: Annotated[int | None, typer.Option("--keep", metavar="N", help="Newest AMIs to keep "
                                             "(default: ami_keep)")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really deregister and delete the "
                                      "snapshots (default: only show the plan)")] = False,
) -> None:
    """Deregister a comp's old AMIs that nothing uses.

    Keeps the newest --keep and every AMI still referenced by a launch template, an Auto
    Scaling group, an instance, a deployment or a share; only --yes deletes.
    """
    from builder.pipelines.prune import prune

    _emit(ctx, prune(_g(ctx).project(), app_name, env, comp, keep=keep, yes=yes))


@_command(app, "status",
          "builder status",
          "builder status demo --env prod --json")
def status_command(
    ctx: typer.Context,
    app_name: AllApps = None,
    env: OnlyEnv = None,
) -> None:
    """Show what each comp runs and whether a rebuild is due.

    Per comp: the AMI on the launch template's default, its age and status, its base
    image and a newer one, what is due and why, and the last deployment.
    """
    from builder.pipelines.status import status

    _emit(ctx, status(_g(ctx).project(), app_name, env))


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
        "--port", metavar="PORT", help="Emulator port on 127.0.0.1 (default: a free one)")
    ] = None,
    no_build_host: Annotated[bool, typer.Option(
        "--no-build-host", help="Skip the build host image (or BUILDER_LOCAL_NO_BUILD_HOST=1)"
    )] = False,
) -> None:
    """Start the emulator, resources and build host image.

    Idempotent: a running emulator is reused and only what is missing is made.
    """
    from builder.local.stack import up
    from builder.output import Progress

    _emit(ctx, up(_g(ctx).project(), port, progress=Progress(),
                  build_host=False if no_build_host else None))


@_command(local_app, "down", "builder local down")
def local_down_command(ctx: typer.Context) -> None:
    """Stop the emulator and this root's build hosts."""
    from builder.local.stack import down

    _emit(ctx, down(_g(ctx).project().layout))


@_command(local_app, "status", "builder local status", "builder local status --json")
def local_status_command(ctx: typer.Context) -> None:
    """Show the emulator's endpoint and resources.

    Whether it runs, its endpoint, and the resources per account and region.
    """
    from builder.local.stack import status

    _emit(ctx, status(_g(ctx).project().layout))


@_command(local_app, "fail-next-deployment", "builder local fail-next-deployment demo dev app")
def local_fail_next_command(ctx: typer.Context, app_name: App, env: Env, comp: Comp) -> None:
    """Make the comp's next deployment fail (for tests)."""
    from builder.local.stack import fail_next_deployment

    _emit(ctx, fail_next_deployment(_g(ctx).project(), app_name, env, comp))


@_command(local_app, "publish-source-ami", "builder local publish-source-ami demo dev")
def local_publish_source_ami_command(ctx: typer.Context, app_name: App, env: Env) -> None:
    """Publish a newer base image (as OS updates do).

    The image matches the env's source_ami_filter, so `rebuild` sees it as due.
    """
    from builder.local.resources import publish_source_ami

    _emit(ctx, publish_source_ami(_g(ctx).project(), app_name, env))


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`builder`, `python -m builder`)."""
    try:
        app(args=sys.argv[1:] if argv is None else argv, prog_name="builder")
    except KeyboardInterrupt:
        sys.stderr.write("builder: interrupted\n")
        sys.exit(130)
