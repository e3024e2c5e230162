"""The command line: options → one step → output; BuilderError → exit code.

Heavy imports (boto3, ansible_runner, hcl2) happen inside the commands that need
them, so `builder --help` stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from builder.errors import BuilderError, InputError

if TYPE_CHECKING:
    from builder.bake.build import BakeFailure, BakeResult
    from builder.interrupts import Cancel
    from builder.output import Progress, Result
    from builder.project import Project

# Global options may come anywhere on the line (`builder bake demo dev app --local`):
# they are moved in front of the command before parsing.
_GLOBAL_FLAGS = {"--local", "--json", "-v", "--verbose"}
_GLOBAL_OPTIONS = {"--root", "-e", "--extra-var"}


def hoist_globals(args: list[str]) -> list[str]:
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


app = typer.Typer(
    cls=_Group,
    help="Bake, release and promote AMIs for apps on EC2 Auto Scaling groups.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
local_app = typer.Typer(help="The embedded AWS emulator and build host (local mode).",
                        no_args_is_help=True)
app.add_typer(local_app, name="local")
template_app = typer.Typer(help="User Packer templates: what builder changes in them.",
                           no_args_is_help=True)
app.add_typer(template_app, name="template")


@dataclass
class Globals:
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
    root: Annotated[str | None, typer.Option("--root", help="Infra repo (default: BUILDER_ROOT, "
                                             "else the nearest folder upward with vars/)")] = None,
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
    from builder.output import emit

    emit(result, as_json=_g(ctx).as_json)


App = Annotated[str, typer.Argument(help="App (a folder under vars/)")]
Env = Annotated[str, typer.Argument(help="Environment (a folder under vars/APP/)")]
Comp = Annotated[str, typer.Argument(help="Component (in the env's components)")]


@app.command("vars")
def vars_command(ctx: typer.Context, app_name: App, env: Env, comp: Comp) -> None:
    """Show the resolved vars of APP ENV COMP, each with the file:line it came from."""
    _emit(ctx, _g(ctx).project().resolve(app_name, env, comp))


@app.command("render")
def render_command(
    ctx: typer.Context, app_name: App, env: Env, comp: Comp,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder "
                                             "(default .builder/render/APP/ENV/COMP)")] = None,
) -> None:
    """Render the Packer template, its var file and the resolved vars; validated."""
    from builder.render.template import write

    project = _g(ctx).project()
    rendered = project.renderer.render(project.resolve(app_name, env, comp))
    folder = out or project.layout.state_dir / "render" / app_name / env / comp
    _emit(ctx, write(rendered, folder.resolve()))


@app.command("validate")
def validate_command(
    ctx: typer.Context,
    app_name: Annotated[str | None, typer.Argument(help="App (default: all)")] = None,
    env: Annotated[str | None, typer.Option("--env", help="Only this env")] = None,
    comp: Annotated[str | None, typer.Option("--comp", help="Only this comp")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Skip packer validate and the "
                                          "Ansible syntax check")] = False,
    jobs: Annotated[int, typer.Option("-j", "--jobs", help="External checks in parallel")] = 2,
) -> None:
    """Check every (app, env, comp) in scope; report every problem at once.

    Config, render, HCL, `packer validate` and the Ansible syntax check; exit 2 if any.
    """
    from builder.pipelines.validate import validate

    report = validate(_g(ctx).project(), app_name, env, comp, offline=offline, jobs=jobs)
    _emit(ctx, report)
    if not report.ok:
        raise typer.Exit(2)


@template_app.command("check")
def template_check_command(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Template name under packer/ "
                                               "(default: every template the combos use)")
                    ] = None,
) -> None:
    """What builder will change in each template, in order, and what it can't handle,
    with file:line; exit 2 if a template can't be used. `render` writes the adapted copy."""
    from builder.pipelines.templates import check

    report = check(_g(ctx).project(), name)
    _emit(ctx, report)
    if not report.ok:
        raise typer.Exit(2)


@app.command("bake")
def bake_command(
    ctx: typer.Context, app_name: App, env: Env,
    comp: Annotated[str | None, typer.Argument(help="Component (or --all)")] = None,
    all_comps: Annotated[bool, typer.Option("--all", help="Every comp of the env, in parallel")
                         ] = False,
    jobs: Annotated[int | None, typer.Option("-j", "--jobs", help="Parallel bakes with --all "
                                             "(default: comps, at most 4)")] = None,
    force: Annotated[bool, typer.Option("--force", help="Bake even if an AMI with the same "
                                        "fingerprint exists")] = False,
    vault_password_file: Annotated[Path | None, typer.Option(
        "--vault-password-file", help="Ansible vault password (or BUILDER_VAULT_PASSWORD_FILE, "
        "or the vault_password_ssm_parameter var)")] = None,
    release_after: Annotated[bool, typer.Option(
        "--release", help="Then release each baked (or unchanged) AMI, as `builder release` "
        "does")] = False,
) -> None:
    """Bake an AMI for APP ENV COMP (skipped when its inputs are unchanged)."""
    from builder.bake.build import BakeOptions, bake, bake_all
    from builder.config.models import Combo
    from builder.interrupts import Cancel, handle_signals
    from builder.output import Progress

    if (comp is None) == (not all_comps):
        raise InputError("give a COMP or --all (not both)")
    project = _g(ctx).project()
    options = BakeOptions(force=force, vault_password_file=vault_password_file)
    progress = Progress()
    with handle_signals(Cancel()) as cancel:
        if comp is not None:
            result = bake(project, Combo(app_name, env, comp), options=options,
                          progress=progress, cancel=cancel)
            if release_after:
                _release_baked(ctx, project, (result,), progress, cancel)
            else:
                _emit(ctx, result)
            return
        batch = bake_all(project, app_name, env, jobs=jobs, options=options,
                         progress=progress, cancel=cancel)
        if release_after:
            _release_baked(ctx, project, batch.outcomes, progress, cancel)
            return
    _emit(ctx, batch)
    if batch.failures:
        raise typer.Exit(1)


def _release_baked(ctx: typer.Context, project: Project,
                   baked: Sequence[BakeResult | BakeFailure], progress: Progress,
                   cancel: Cancel) -> None:
    """`bake --release`: one report per comp; exit 1 (2) if any bake or release failed."""
    from builder.pipelines.bake_release import release_baked

    report = release_baked(project, baked, progress=progress, cancel=cancel)
    _emit(ctx, report)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


@app.command("release")
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
        "--timeout", metavar="MIN", help="Minutes to wait for the deployment before stopping "
        "it and rolling back")] = 30.0,
    break_lock: Annotated[bool, typer.Option(
        "--break-lock", help="Take the release lock even if another release holds it (when "
        "that one is gone)")] = False,
) -> None:
    """Put an AMI on the comp's launch template and deploy it blue/green with CodeDeploy.

    Failed, stopped or timed out: launch template and ASG go back, the AMI is tagged failed.
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


@app.command("reap")
def reap_command(
    ctx: typer.Context,
    older_than: Annotated[str, typer.Option("--older-than", help="Only what is older (30m, 2h, "
                                            "1d)")] = "2h",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list")] = False,
) -> None:
    """Remove builder instances, key pairs and security groups left by crashed bakes."""
    from builder.pipelines.reap import parse_age, reap

    _emit(ctx, reap(_g(ctx).project(), parse_age(older_than), dry_run=dry_run))


@app.command("promote")
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
    """Copy the AMI verified in the promote_from env into ENV's account and region,
    re-encrypted and with its lineage, and release it there.

    Checks every permission first and names what is missing (exit 2); an AMI that is not
    verified in the source env is refused (exit 2).
    """
    from builder.interrupts import Cancel, handle_signals
    from builder.output import Progress
    from builder.pipelines.promote import promote

    project = _g(ctx).project()
    with handle_signals(Cancel()) as cancel:
        _emit(ctx, promote(project, app_name, comp, to_env, ami_id=ami, deploy=not no_deploy,
                           progress=Progress(), cancel=cancel))


@app.command("rebuild")
def rebuild_command(
    ctx: typer.Context,
    app_name: Annotated[str | None, typer.Argument(help="App (default: all)")] = None,
    env: Annotated[str | None, typer.Option("--env", help="Only this env")] = None,
    release_after: Annotated[bool, typer.Option(
        "--release", help="Release what is baked, and deploy what is promoted")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Only the plan (with --json: a list usable as a CI matrix)")] = False,
    jobs: Annotated[int | None, typer.Option("-j", "--jobs", help="Parallel bakes "
                                             "(default: at most 4)")] = None,
) -> None:
    """Bake what is stale (newer base image, changed inputs, too old), promote what the
    source env has verified since; exit 1 if anything failed."""
    from builder.interrupts import Cancel, handle_signals
    from builder.output import Progress
    from builder.pipelines.rebuild import rebuild

    project = _g(ctx).project()
    with handle_signals(Cancel()) as cancel:
        report = rebuild(project, app_name, env, release=release_after, dry_run=dry_run,
                         jobs=jobs, progress=Progress(), cancel=cancel)
    _emit(ctx, report)
    if report.failed:
        raise typer.Exit(1)


@app.command("prune")
def prune_command(
    ctx: typer.Context, app_name: App, env: Env, comp: Comp,
    keep: Annotated[int | None, typer.Option("--keep", metavar="N", help="Newest AMIs to keep "
                                             "(default: ami_keep)")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really deregister and delete the "
                                      "snapshots (default: only show the plan)")] = False,
) -> None:
    """Deregister the comp's old AMIs and delete their snapshots; anything still in use
    (launch templates, Auto Scaling groups, instances, deployments, shares) stays."""
    from builder.pipelines.prune import prune

    report = prune(_g(ctx).project(), app_name, env, comp, keep=keep, yes=yes)
    _emit(ctx, report)
    if report.failed:
        raise typer.Exit(1)


@app.command("status")
def status_command(
    ctx: typer.Context,
    app_name: Annotated[str | None, typer.Argument(help="App (default: all)")] = None,
    env: Annotated[str | None, typer.Option("--env", help="Only this env")] = None,
) -> None:
    """What each comp runs: AMI, age, base image, whether a rebuild is due, last deployment."""
    from builder.pipelines.status import status

    _emit(ctx, status(_g(ctx).project(), app_name, env))


@local_app.command("up")
def local_up_command(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option("--port", help="Emulator port on 127.0.0.1 "
                                             "(default: a free one)")] = None,
    no_build_host: Annotated[bool, typer.Option(
        "--no-build-host", help="Skip the build host image (or BUILDER_LOCAL_NO_BUILD_HOST=1)"
    )] = False,
) -> None:
    """Start the emulator (or reuse it) and make the missing resources and build host image."""
    from builder.local.stack import up
    from builder.output import Progress

    _emit(ctx, up(_g(ctx).project(), port, progress=Progress(),
                  build_host=False if no_build_host else None))


@local_app.command("down")
def local_down_command(ctx: typer.Context) -> None:
    """Stop the emulator and every build host of this root."""
    from builder.local.stack import down

    _emit(ctx, down(_g(ctx).project().layout))


@local_app.command("status")
def local_status_command(ctx: typer.Context) -> None:
    """Whether the emulator runs, its endpoint, and the resources per account and region."""
    from builder.local.stack import status

    _emit(ctx, status(_g(ctx).project().layout))


@local_app.command("fail-next-deployment")
def local_fail_next_command(ctx: typer.Context, app_name: App, env: Env, comp: Comp) -> None:
    """Make the next deployment of the comp's deployment group fail (a test control)."""
    from builder.local.stack import fail_next_deployment

    _emit(ctx, fail_next_deployment(_g(ctx).project(), app_name, env, comp))


@local_app.command("publish-source-ami")
def local_publish_source_ami_command(ctx: typer.Context, app_name: App, env: Env) -> None:
    """Publish a newer base image matching the env's source_ami_filter (OS updates)."""
    from builder.local.resources import publish_source_ami

    _emit(ctx, publish_source_ami(_g(ctx).project(), app_name, env))


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`builder`, `python -m builder`)."""
    try:
        app(args=sys.argv[1:] if argv is None else argv, prog_name="builder")
    except KeyboardInterrupt:
        sys.stderr.write("builder: interrupted\n")
        sys.exit(130)
