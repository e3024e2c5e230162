"""The command line: options → one step → output; BuilderError → exit code.

Heavy imports (boto3, ansible_runner, hcl2) happen inside the commands that need
them, so `builder --help` stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from builder.errors import BuilderError, InputError

if TYPE_CHECKING:
    from builder.output import Result
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
            rest.append(arg)
            rest.extend(items)
            break
        attached = arg.startswith("--") and arg.split("=", 1)[0] in _GLOBAL_OPTIONS
        if arg in _GLOBAL_FLAGS or (attached and "=" in arg):
            front.append(arg)
        elif arg in _GLOBAL_OPTIONS:
            front.append(arg)
            front.append(next(items, ""))
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


@dataclass
class Globals:
    root: str | None = None
    local: bool = False
    as_json: bool = False
    verbose: bool = False
    overrides: dict[str, str] = field(default_factory=dict)

    def project(self) -> Project:
        from builder.project import Project

        return Project.open(self.root, local=self.local, overrides=self.overrides)


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
    from builder.render import write

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
    from builder.validate import validate

    report = validate(_g(ctx).project(), app_name, env, comp, offline=offline, jobs=jobs)
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
) -> None:
    """Bake an AMI for APP ENV COMP (skipped when its inputs are unchanged)."""
    from builder.bake import BakeOptions, bake, bake_all
    from builder.interrupts import Cancel, handle_signals
    from builder.models import Combo
    from builder.output import Progress

    if (comp is None) == (not all_comps):
        raise InputError("give a COMP or --all (not both)")
    project = _g(ctx).project()
    options = BakeOptions(force=force, vault_password_file=vault_password_file)
    with handle_signals(Cancel()) as cancel:
        if comp is not None:
            _emit(ctx, bake(project, Combo(app_name, env, comp), options=options,
                            progress=Progress(), cancel=cancel))
            return
        batch = bake_all(project, app_name, env, jobs=jobs, options=options,
                         progress=Progress(), cancel=cancel)
    _emit(ctx, batch)
    if batch.failures:
        raise typer.Exit(1)


@app.command("reap")
def reap_command(
    ctx: typer.Context,
    older_than: Annotated[str, typer.Option("--older-than", help="Only what is older (30m, 2h, "
                                            "1d)")] = "2h",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list")] = False,
) -> None:
    """Remove builder instances, key pairs and security groups left by crashed bakes."""
    from builder.reap import parse_age, reap

    _emit(ctx, reap(_g(ctx).project(), parse_age(older_than), dry_run=dry_run))


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`builder`, `python -m builder`)."""
    try:
        app(args=sys.argv[1:] if argv is None else argv, prog_name="builder")
    except KeyboardInterrupt:
        sys.stderr.write("builder: interrupted\n")
        sys.exit(130)
