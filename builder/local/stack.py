"""The local stack as seen from a builder command: start it, stop it, look at it, and
poke it (make a deployment fail).

One emulator process per infra root, found through `<root>/.builder/local/server.json`.
`up` is idempotent: a running stack is reused and only missing resources are made.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder import process
from builder.config.layout import Layout
from builder.errors import (
    BuilderError,
    OperationFailed,
    Problem,
    RefusedError,
    TimedOut,
    ToolMissing,
    ValidationFailed,
)
from builder.local import buildhost, control, iam
from builder.local.emulator.server import LOG_FILE, SERVER_FILE, STATE_FILE, UNREADABLE_SUFFIX
from builder.local.mode import local_project
from builder.local.resources import ResourcesReport, ensure_resources
from builder.local.state import (
    is_ours,
    live_server,
    running_commands,
    running_endpoint,
    server_info,
    state_dir,
)
from builder.output import ProgressFn, silent, table
from builder.polling import poll_until
from builder.strict import env_flag, env_number

if TYPE_CHECKING:
    from builder.project import Project

# `up` without the build host image (tests that only need AWS): BUILDER_LOCAL_NO_BUILD_HOST=1.
NO_BUILD_HOST_ENV = "BUILDER_LOCAL_NO_BUILD_HOST"
# Seconds between deployment states of a newly started stack (default 1).
DEPLOY_STEP_ENV = "BUILDER_LOCAL_DEPLOY_STEP_SECONDS"
START_TIMEOUT_SECONDS = 60.0
# Under the state folder; a bake keeps what it changed on the build host here, per AMI.
IMAGES_DIR = "images"
STOP_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class LocalStatus:
    """`builder local up` / `status`: whether the stack runs, where, and what it holds."""

    running: bool
    endpoint: str | None = None
    pid: int | None = None
    note: str = ""
    accounts: Mapping[str, Any] = field(default_factory=dict)
    resources: ResourcesReport | None = None
    build_host_image: str | None = None
    seconds: float | None = None
    enforcement: iam.Enforcement | None = None
    # The saved state: None while it was restored (or there was none), else why not.
    restore_error: str | None = None
    images_removed: tuple[str, ...] = ()

    exit_code = 0

    def to_json(self) -> dict[str, Any]:
        return {"running": self.running, "endpoint": self.endpoint, "pid": self.pid,
                "note": self.note, "accounts": dict(self.accounts),
                "restore_error": self.restore_error,
                "images_removed": list(self.images_removed),
                "resources": self.resources.to_json() if self.resources else None,
                "build_host_image": self.build_host_image, "seconds": self.seconds,
                "iam": self.enforcement.to_json() if self.enforcement else None}

    def to_text(self) -> str:
        if not self.running:
            return f"local stack: not running{f' ({self.note})' if self.note else ''}"
        lines = [f"local stack: {self.note or 'running'} at {self.endpoint} (pid {self.pid})"
                 + (f" in {self.seconds:.1f}s" if self.seconds is not None else "")]
        if self.restore_error:
            lines.append(f"the saved state could not be restored, started empty: "
                         f"{self.restore_error}")
        if self.images_removed:
            lines.append(f"local images of AMIs that no longer exist, removed: "
                         f"{', '.join(self.images_removed)}")
        if self.resources is not None:
            lines.append(self.resources.to_text())
        if self.build_host_image:
            lines.append(f"build host image: {self.build_host_image}")
        if self.enforcement:
            lines.append(self.enforcement.to_text())
        kinds = ("images", "launch_templates", "auto_scaling_groups", "deployment_groups",
                 "buckets", "kms_aliases", "ssm_parameters")
        rows = [(account, region, *(len(held.get(kind, [])) for kind in kinds))
                for account, regions in sorted(self.accounts.items())
                for region, held in sorted(regions.items())]
        if rows:
            lines += ["", table(("account", "region", "images", "templates", "asgs",
                                 "groups", "buckets", "kms", "ssm"), rows)]
        return "\n".join(lines)


@dataclass(frozen=True)
class LocalDown:
    """What `local down` stopped."""

    stopped: bool
    pid: int | None
    build_hosts_stopped: int
    # Runs whose failed bake had kept its build host: stopped too; their instance record
    # and key stay until `builder reap` (their time, or --run-id).
    kept_hosts_stopped: tuple[str, ...] = ()

    exit_code = 0

    def to_json(self) -> dict[str, Any]:
        return {"stopped": self.stopped, "pid": self.pid,
                "build_hosts_stopped": self.build_hosts_stopped,
                "kept_hosts_stopped": list(self.kept_hosts_stopped)}

    def to_text(self) -> str:
        head = (f"local stack stopped (pid {self.pid})" if self.stopped
                else "local stack was not running")
        text = f"{head}; build hosts stopped: {self.build_hosts_stopped}"
        if self.kept_hosts_stopped:
            text += (f"\nof them kept for debugging, now stopped: "
                     f"{', '.join(self.kept_hosts_stopped)} (their instance, key pair, "
                     "security group and key file stay until `builder reap`: after their "
                     "time, or at once with --run-id)")
        return text


@dataclass(frozen=True)
class LocalReset:
    """What `local reset` stopped and forgot."""

    down: LocalDown
    removed: tuple[str, ...]

    exit_code = 0

    def to_json(self) -> dict[str, Any]:
        return {**self.down.to_json(), "removed": list(self.removed)}

    def to_text(self) -> str:
        forgot = ", ".join(self.removed) if self.removed else "nothing was saved"
        return (f"{self.down.to_text()}\nforgotten: {forgot}\n"
                "`builder local up` starts an empty stack")


@dataclass(frozen=True)
class FailureArmed:
    """`builder local fail-next-deployment`: which group's next deployment fails."""

    account: str
    region: str
    application: str
    deployment_group: str

    exit_code = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_text(self) -> str:
        return (f"the next deployment of {self.application}/{self.deployment_group} "
                f"({self.account} {self.region}) will fail")


@dataclass(frozen=True)
class RefreshFailureArmed:
    """`builder local fail-next-refresh`: which Auto Scaling group's next instance
    refresh fails (and rolls back)."""

    account: str
    region: str
    asg: str

    exit_code = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_text(self) -> str:
        return (f"the next instance refresh of Auto Scaling group {self.asg} "
                f"({self.account} {self.region}) will fail and roll back")


def up(project: Project, port: int | None = None, *, progress: ProgressFn = silent,
       build_host: bool | None = None, deploy_step_seconds: float | None = None,
       enforce_iam: bool | None = None, keep_state: bool = True) -> LocalStatus:
    """Start the stack (or reuse the running one), make the missing resources and the
    build host image.

    build_host None: prepare it unless BUILDER_LOCAL_NO_BUILD_HOST=1.
    deploy_step_seconds: seconds between deployment states (and instance refresh steps)
    when the stack starts here
    (None: BUILDER_LOCAL_DEPLOY_STEP_SECONDS, else the server's 1 s).
    enforce_iam: attach the generated policies to the env roles and enforce IAM (None:
    BUILDER_LOCAL_ENFORCE_IAM=1); a stack already enforcing keeps enforcing.
    keep_state: a stack started here restores and saves its state (False: benchmarks
    measuring what that costs).
    """
    started = time.monotonic()
    layout = project.layout
    _check_config(project)
    info = live_server(layout)
    note = "already running"
    if info is None:
        progress("local", "starting the emulator")
        info = _start(layout, port, deploy_step_seconds, keep_state)
        note = "started"
    try:
        progress("local", f"emulator at {info['endpoint']}; making resources")
        local = local_project(project)
        with iam.paused(str(info["endpoint"])) as enforcing:
            report = ensure_resources(local, progress)
        enforced = None
        if enforcing or (enforce_iam if enforce_iam is not None
                         else env_flag(iam.ENFORCE_IAM_ENV)):
            progress("local", "attaching the generated IAM policies; enforcing IAM")
            enforced = iam.enforce(local)
        image = None
        if build_host if build_host is not None else not env_flag(NO_BUILD_HOST_ENV):
            image = str(buildhost.ensure_image(progress=lambda m: progress("build host", m)))
        current = status(layout)
        saved = control.call(str(info["endpoint"]), "state")
        removed = _remove_stale_images(layout, current.accounts)
    except BaseException:
        # A failed `up` leaves things as it found them: no emulator it started itself.
        if note == "started":
            down(layout, force=True)
        raise
    return dataclasses.replace(current, note=note, resources=report, build_host_image=image,
                               seconds=round(time.monotonic() - started, 2),
                               enforcement=enforced, restore_error=saved.get("restore_error"),
                               images_removed=removed)


def _remove_stale_images(layout: Layout, accounts: Mapping[str, Any]) -> tuple[str, ...]:
    """Remove the local images (`.builder/local/images/<ami>`) and base image layers
    (`.builder/local/base-images/<ami>`) of AMIs the emulator no longer holds (reset,
    deregistered while the stack was down, a lost state)."""
    held = {image["id"] for regions in accounts.values() for held in regions.values()
            for image in held.get("images", [])}
    removed = []
    for kind in (IMAGES_DIR, buildhost.BASE_LAYERS):
        folder = state_dir(layout) / kind
        for image in sorted(folder.iterdir()) if folder.is_dir() else []:
            if image.name.startswith("ami-") and image.name not in held:
                shutil.rmtree(image)
                removed.append(image.name)
    return tuple(removed)


def _check_config(project: Project) -> None:
    """Every combo's config must resolve before anything starts: all problems at once."""
    problems: list[Problem] = []
    for combo in project.config.combos():
        if isinstance(combo, Problem):
            problems.append(combo)
            continue
        try:
            project.resolve(combo.app, combo.env, combo.comp)
        except ValidationFailed as exc:
            problems += exc.problems
        except BuilderError as exc:
            problems.append(exc.problem)
    if problems:
        raise ValidationFailed(problems)


def down(layout: Layout, *, force: bool = False) -> LocalDown:
    """Stop the emulator and every build host of this root, those kept for debugging too
    (said); not while a bake or release of this root uses them, unless `force` (then
    that run fails, and cleans up what it can)."""
    running = running_commands(layout)
    if running and not force:
        raise RefusedError("the local stack is in use by " + "; ".join(running)
                           + ": wait for it, or `builder local down --force`")
    info = server_info(layout)
    pid = int(info["pid"]) if info and "pid" in info else None
    stopped = False
    if pid is not None and info is not None and _is_our_server(layout, pid, info):
        stopped = process.stop(pid, grace_s=STOP_TIMEOUT_SECONDS)
    (state_dir(layout) / SERVER_FILE).unlink(missing_ok=True)
    kept = tuple(buildhost.kept_hosts(layout))
    return LocalDown(stopped, pid if stopped else None, buildhost.stop_all(layout), kept)


def reset(layout: Layout, *, force: bool = False) -> LocalReset:
    """Stop the stack (as `down`, refusing while a run uses it unless `force`) and forget
    its saved state and local images, so the next `up` starts empty."""
    stopped = down(layout, force=force)
    folder = state_dir(layout)
    removed = []
    for name in (STATE_FILE, STATE_FILE + UNREADABLE_SUFFIX, STATE_FILE + ".partial"):
        path = folder / name
        if path.exists():
            path.unlink()
            removed.append(name)
    for kind in (IMAGES_DIR, buildhost.BASE_LAYERS):
        if (folder / kind).exists():
            shutil.rmtree(folder / kind)
            removed.append(kind)
    return LocalReset(stopped, tuple(removed))


def status(layout: Layout) -> LocalStatus:
    """Whether the emulator of this root runs, and what each account holds."""
    info = live_server(layout)
    if info is None:
        return LocalStatus(running=False)
    endpoint = str(info["endpoint"])
    accounts = control.call(endpoint, "inventory")["accounts"]
    return LocalStatus(running=True, endpoint=endpoint, pid=int(info["pid"]), note="running",
                       accounts=accounts)


def fail_next_deployment(project: Project, app: str, env: str, comp: str,
                         region: str | None = None) -> FailureArmed:
    """Arm a failure for the next deployment of the comp's deployment group (in `region`
    of a multi-region env; default: its bake region)."""
    project = local_project(project)
    resolved = project.resolve(app, env, comp)
    settings = (resolved.in_region(region) if region else resolved).settings
    armed = FailureArmed(settings.aws_account_id, settings.aws_region,
                         settings.codedeploy_application, settings.codedeploy_deployment_group)
    endpoint = running_endpoint(project.layout)
    control.call(endpoint, "codedeploy/fail-next", {
        "account": armed.account, "region": armed.region,
        "application": armed.application, "deployment_group": armed.deployment_group})
    return armed


def fail_next_refresh(project: Project, app: str, env: str, comp: str) -> RefreshFailureArmed:
    """Arm a failure for the next instance refresh of the comp's `auto_scaling_group`
    (the one `local up` makes, also its in-place deployment group's)."""
    project = local_project(project)
    settings = project.resolve(app, env, comp).settings
    armed = RefreshFailureArmed(settings.aws_account_id, settings.aws_region,
                                settings.auto_scaling_group)
    control.call(running_endpoint(project.layout), "autoscaling/fail-next-refresh", {
        "account": armed.account, "region": armed.region, "asg": armed.asg})
    return armed


def hold_refreshes(project: Project, app: str, env: str, comp: str, at: str | None) -> None:
    """Hold the instance refreshes of the comp's `auto_scaling_group` where they are
    ("Pending") or at their next checkpoint ("Checkpoint") until called again with None,
    so a test sees one in that state however slow the machine is."""
    project = local_project(project)
    settings = project.resolve(app, env, comp).settings
    control.call(running_endpoint(project.layout), "autoscaling/hold-refreshes", {
        "account": settings.aws_account_id, "region": settings.aws_region,
        "asg": settings.auto_scaling_group, "at": at})


def hold_deployments(project: Project, app: str, env: str, comp: str,
                     status: str | None) -> None:
    """Hold the deployments of the comp's deployment group at `status` (Created or
    InProgress) until called again with None, so a test sees a deployment in that state
    however slow the machine is."""
    project = local_project(project)
    settings = project.resolve(app, env, comp).settings
    control.call(running_endpoint(project.layout), "codedeploy/hold", {
        "account": settings.aws_account_id, "region": settings.aws_region,
        "application": settings.codedeploy_application,
        "deployment_group": settings.codedeploy_deployment_group, "status": status})


def date_image(project: Project, app: str, env: str, comp: str, image_id: str,
               created: datetime) -> None:
    """Date an image of the comp's account and region as made at `created`, so a test
    orders images by creation date without waiting."""
    project = local_project(project)
    settings = project.resolve(app, env, comp).settings
    control.call(running_endpoint(project.layout), "images/creation-date", {
        "account": settings.aws_account_id, "region": settings.aws_region,
        "image_id": image_id, "creation_date": created.isoformat()})


def _start(layout: Layout, port: int | None, deploy_step_seconds: float | None,
           keep_state: bool) -> dict[str, Any]:
    if importlib.util.find_spec("moto") is None:
        raise ToolMissing("local mode needs the emulator: pip install 'builder[local]' "
                          "(`make setup` installs it)")
    folder = state_dir(layout)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SERVER_FILE).unlink(missing_ok=True)  # a stale one from a killed server
    step = deploy_step_seconds
    if step is None:
        step = env_number(DEPLOY_STEP_ENV, maximum=3600)
    argv = [sys.executable, "-m", "builder.local.emulator.server", "--port", str(port or 0),
            "--state-dir", str(folder)]
    if step is not None:
        argv += ["--deploy-step-seconds", str(step)]
    if not keep_state:
        argv.append("--no-keep-state")
    log_path = folder / LOG_FILE
    with log_path.open("ab") as log:
        child = process.start(argv, stdout=log.fileno(), stderr=subprocess.STDOUT)

    def listening() -> dict[str, Any] | None:
        if child.poll() is not None:
            raise OperationFailed(f"the local emulator exited with code {child.returncode}: "
                                  f"{_tail(log_path)}")
        info = live_server(layout)
        return info if info is not None and info.get("pid") == child.pid else None

    try:
        return poll_until(listening, timeout_s=START_TIMEOUT_SECONDS, interval_s=0.05,
                          what="starting the local emulator")
    except TimedOut as exc:
        process.stop(child, signum=signal.SIGKILL)
        raise OperationFailed(f"the local emulator did not answer within "
                              f"{START_TIMEOUT_SECONDS:.0f}s: {_tail(log_path)}") from exc


def _tail(log_path: Path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def _is_our_server(layout: Layout, pid: int, info: dict[str, Any]) -> bool:
    """The pid of server.json is this root's emulator: it answers as that pid with this
    root's state folder and token, or (hung) its command line names this state folder.
    A reused pid of another program, or another root's emulator (server.json copied with
    a root), is never signalled."""
    if not is_ours(layout, info):
        return False
    if "endpoint" in info:
        try:
            health = control.call(str(info["endpoint"]), "health", timeout=5)
            if all(health.get(key) == info.get(key) for key in ("pid", "state_dir", "token")):
                return True
        except OperationFailed:
            pass
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    folder = state_dir(layout)
    return b"builder.local.emulator.server" in argv and any(
        Path(os.fsdecode(arg)).resolve() == folder.resolve()
        for before, arg in itertools.pairwise(argv) if before == b"--state-dir")

