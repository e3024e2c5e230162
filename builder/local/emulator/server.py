"""The emulator process: moto's server, the CodeDeploy emulator and our control routes,
on 127.0.0.1 only.

    python -m builder.local.emulator.server --port N --state-dir D [--deploy-step-seconds S]
                                            [--no-keep-state]

`<state-dir>/server.json` ({"endpoint", "pid", "port", "state_dir", "token", ...}) appears
once the socket listens and goes when the process ends; the log is
`<state-dir>/server.log`. The state folder's absolute path and a random token, in both
server.json and the health reply, tell a root's own emulator from another root's (a
`cp -r` of a root copies server.json too).

Control routes (JSON; moto serves every other path):

    GET  /_builder/health                      {"ok", "pid", "moto", "state_dir", "token"}
    GET  /_builder/inventory                   what exists, per account and region
    POST /_builder/images                      {"owner", "region", "name", "creation_date",
                                                "image_id"?, "public"?}
                                               -> {"image_id", "name", "made"}
    POST /_builder/images/creation-date        {"account", "region", "image_id",
                                                "creation_date"} -> {"image_id", "created"}
    POST /_builder/codedeploy/fail-next        {"account", "region", "application",
                                                "deployment_group", "code"?, "message"?}
    POST /_builder/codedeploy/hold             {"account", "region", "application",
                                                "deployment_group", "status"}
                                               status: "Created", "InProgress" or null
    POST /_builder/autoscaling/fail-next-refresh  {"account", "region", "asg"}
    POST /_builder/autoscaling/hold-refreshes  {"account", "region", "asg", "at"}
                                               at: "Pending", "Checkpoint" or null
    GET  /_builder/iam                         {"enforced", "ci_user_arn"}
    POST /_builder/iam                         {"on", "roles"?, ...}: IAM enforcement
                                               (builder.local.emulator.iam)
    GET  /_builder/state                       {"path", "restore_error", "saves",
                                                "last_save_seconds"}
    POST /_builder/state/save                  {} -> {"path", "bytes", "seconds"}: save now

The state is kept in `<state-dir>/state.pickle` (builder.local.emulator.persistence):
loaded before the socket listens, saved within a second of a change and on shutdown.

Every request (and the deployment and refresh emulators) holds one lock: moto's backends are not
made for concurrent writers, and local traffic is small.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

HOST = "127.0.0.1"
CONTROL_PREFIX = "/_builder/"
# In --state-dir; builder.local.stack reads them.
SERVER_FILE = "server.json"
LOG_FILE = "server.log"
STATE_FILE = "state.pickle"  # builder.local.emulator.persistence
UNREADABLE_SUFFIX = ".unreadable"  # a saved state that could not be restored, set aside

log = logging.getLogger("builder.local.emulator.server")

StartResponse = Callable[..., Any]


def main(argv: list[str] | None = None) -> None:
    """Command line of the emulator process that `builder local up` starts."""
    parser = argparse.ArgumentParser(prog="python -m builder.local.emulator.server")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--deploy-step-seconds", type=float, default=None,
                        help="time between deployment states and between instance "
                        "refresh steps (default 1)")
    parser.add_argument("--no-keep-state", action="store_true",
                        help="neither restore nor save the state (benchmarks compare)")
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=state_dir / LOG_FILE, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # moto's stock AMIs (hundreds, each with a snapshot) only get in the way: the base
    # images are the ones `builder local up` publishes.
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    serve(state_dir, args.port, args.deploy_step_seconds, keep_state=not args.no_keep_state)


def serve(state_dir: Path, port: int, deploy_step_seconds: float | None, *,
          keep_state: bool = True) -> None:
    """Serve moto with builder's patches and control endpoints on 127.0.0.1 until stopped."""
    import moto
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from builder.local.emulator import iam, patches
    from builder.local.emulator.autoscaling_refresh import RefreshEmulator
    from builder.local.emulator.codedeploy import DEFAULT_STEP_SECONDS, DeploymentEmulator
    from builder.local.emulator.persistence import StateKeeper

    patches.apply()
    iam.apply()
    lock = threading.RLock()
    step = DEFAULT_STEP_SECONDS if deploy_step_seconds is None else deploy_step_seconds

    def builder_state() -> dict[str, Any]:
        return {"deployments": emulator.saved_runs(time.monotonic()),
                "iam_enforced": bool(iam.enforced()["enforced"])}

    keeper = StateKeeper(state_dir / STATE_FILE,
                         state_dir / (STATE_FILE + UNREADABLE_SUFFIX), lock, builder_state,
                         enabled=keep_state)
    emulator = DeploymentEmulator(lock, step_seconds=step, on_change=keeper.changed)
    refreshes = RefreshEmulator(lock, step_seconds=step, on_change=keeper.changed)
    saved = keeper.load()
    emulator.resume(saved.get("deployments") or {}, time.monotonic())
    if saved.get("iam_enforced"):
        iam.set_enforcement({"on": True})
    identity = {"state_dir": str(state_dir), "token": secrets.token_hex(16)}
    app = EmulatorApp(DomainDispatcherApplication(create_backend_app), emulator, lock,
                      moto_version=moto.__version__, identity=identity, keeper=keeper)
    server = make_server(HOST, port, app, threaded=True, request_handler=MotoRequestHandler)
    port = server.server_port
    os.environ["MOTO_PORT"] = str(port)  # moto builds some URLs (S3, SQS) from it
    emulator.start()
    refreshes.start()
    keeper.start()

    def shut_down(signum: int, _frame: Any) -> None:
        log.info("signal %s: shutting down", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    info = {"endpoint": f"http://{HOST}:{port}", "pid": os.getpid(), "port": port,
            "moto": moto.__version__, "deploy_step_seconds": step, **identity,
            "started_at": datetime.now().astimezone().isoformat(timespec="seconds")}
    server_file = state_dir / SERVER_FILE
    _write_atomically(server_file, json.dumps(info, indent=2) + "\n")
    log.info("listening on %s (pid %s)", info["endpoint"], info["pid"])
    try:
        server.serve_forever()
    finally:
        emulator.stop()
        refreshes.stop()
        keeper.stop()
        server.server_close()
        server_file.unlink(missing_ok=True)
        log.info("stopped")


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


class ControlError(Exception):
    """A control request the emulator refuses, with its HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class EmulatorApp:
    """The WSGI app: our control routes, else moto; one request at a time."""

    def __init__(self, moto_app: Any, emulator: Any, lock: threading.RLock, *,
                 moto_version: str, identity: dict[str, str], keeper: Any):
        self._identity = identity
        self._keeper = keeper
        self._moto = moto_app
        self._emulator = emulator
        self._lock = lock
        self._moto_version = moto_version

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        with self._lock:
            if path.startswith(CONTROL_PREFIX):
                return self._control(environ, start_response, path[len(CONTROL_PREFIX):])
            if not reads_only(environ):
                self._keeper.changed()
            # The body is read inside the lock: moto builds it from live objects.
            return list(self._moto(environ, start_response))

    def _control(self, environ: dict[str, Any], start_response: StartResponse,
                 route: str) -> list[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET"))
        handlers: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
            ("GET", "health"): lambda _: {"ok": True, "pid": os.getpid(),
                                          "moto": self._moto_version, **self._identity},
            ("GET", "inventory"): lambda _: inventory(),
            ("POST", "images"): _publish_image,
            ("POST", "images/creation-date"): _date_image,
            ("POST", "codedeploy/fail-next"): self._fail_next,
            ("POST", "codedeploy/hold"): self._hold,
            ("POST", "autoscaling/fail-next-refresh"): _fail_next_refresh,
            ("POST", "autoscaling/hold-refreshes"): _hold_refreshes,
            ("GET", "iam"): lambda _: _iam().enforced(),
            ("POST", "iam"): lambda body: _iam().set_enforcement(body),
            ("GET", "state"): lambda _: self._state(),
            ("POST", "state/save"): lambda _: self._keeper.save(),
        }
        try:
            handler = handlers.get((method, route.strip("/")))
            if handler is None:
                raise ControlError(404, f"no control route {method} /_builder/{route}")
            status, body = 200, handler(_json_body(environ) if method == "POST" else {})
            if method == "POST":
                self._keeper.changed()
        except ControlError as exc:
            status, body = exc.status, {"error": str(exc)}
        except Exception as exc:  # reported to the caller; the server keeps serving
            log.exception("control route %s", route)
            status, body = 500, {"error": f"{type(exc).__name__}: {exc}"}
        payload = json.dumps(body, default=str).encode()
        start_response(f"{status} {'OK' if status == 200 else 'Error'}",
                       [("Content-Type", "application/json"),
                        ("Content-Length", str(len(payload)))])
        return [payload]

    def _state(self) -> dict[str, Any]:
        keeper = self._keeper
        return {"path": str(keeper.path), "restore_error": keeper.restore_error,
                "saves": keeper.saves, "last_save_seconds": keeper.last_save_seconds}

    def _fail_next(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            self._emulator.arm_failure(
                _field(body, "account"), _field(body, "region"), _field(body, "application"),
                _field(body, "deployment_group"),
                code=body.get("code") or "HEALTH_CONSTRAINTS", message=body.get("message") or "")
        except KeyError as exc:
            raise ControlError(404, str(exc.args[0])) from exc
        return {"armed": True}

    def _hold(self, body: dict[str, Any]) -> dict[str, Any]:
        status = body.get("status")
        try:
            self._emulator.hold(_field(body, "account"), _field(body, "region"),
                                _field(body, "application"), _field(body, "deployment_group"),
                                status)
        except KeyError as exc:
            raise ControlError(404, str(exc.args[0])) from exc
        except ValueError as exc:
            raise ControlError(400, str(exc)) from exc
        return {"held_at": status}


# Operations that change nothing, by the start of their name (query, JSON and REST
# protocols alike); any other request may write, so the state is saved after it.
_READ_PREFIXES = ("Describe", "List", "Get", "BatchGet", "Scan", "Query", "Search",
                  "Simulate")


def reads_only(environ: dict[str, Any]) -> bool:
    """Whether a request to moto only reads: its operation (X-Amz-Target, or the query
    protocol's Action, read from the body and put back for moto) starts with a read
    verb, or it is an HTTP GET or HEAD without an Action."""
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if target:
        return target.rpartition(".")[2].startswith(_READ_PREFIXES)
    method = str(environ.get("REQUEST_METHOD", "GET"))
    action = parse_qs(str(environ.get("QUERY_STRING", ""))).get("Action", [""])[0]
    if not action and method == "POST" and str(environ.get("CONTENT_TYPE", "")).startswith(
            "application/x-www-form-urlencoded"):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
    if action:
        return action.startswith(_READ_PREFIXES)
    return method in ("GET", "HEAD")


def _iam() -> Any:
    """The IAM enforcement module, loaded by the routes that use it: it imports moto,
    and this module is also imported (for its file names) by every local command."""
    from builder.local.emulator import iam

    return iam


def _json_body(environ: dict[str, Any]) -> dict[str, Any]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    try:
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
    except ValueError as exc:
        raise ControlError(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ControlError(400, "the body must be a JSON object")
    return body


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ControlError(400, f"missing {name!r}")
    return value


def _fail_next_refresh(body: dict[str, Any]) -> dict[str, Any]:
    from builder.local.emulator import autoscaling_refresh

    try:
        autoscaling_refresh.arm_failure(_field(body, "account"), _field(body, "region"),
                                        _field(body, "asg"))
    except KeyError as exc:
        raise ControlError(404, str(exc.args[0])) from exc
    return {"armed": True}


def _hold_refreshes(body: dict[str, Any]) -> dict[str, Any]:
    from builder.local.emulator import autoscaling_refresh

    at = body.get("at")
    try:
        autoscaling_refresh.hold(_field(body, "account"), _field(body, "region"),
                                 _field(body, "asg"), at)
    except KeyError as exc:
        raise ControlError(404, str(exc.args[0])) from exc
    except ValueError as exc:
        raise ControlError(400, str(exc)) from exc
    return {"held_at": at}


def _publish_image(body: dict[str, Any]) -> dict[str, Any]:
    from builder.local.emulator.ec2_images import publish_image

    image, made = publish_image(_field(body, "owner"), _field(body, "region"),
                                _field(body, "name"), _timestamp(body),
                                image_id=body.get("image_id"),
                                public=body.get("public") is not False)
    return {"image_id": image.id, "name": image.name, "made": made}


def _date_image(body: dict[str, Any]) -> dict[str, Any]:
    from builder.local.emulator.ec2_images import set_creation_date

    created = _timestamp(body)
    try:
        image = set_creation_date(_field(body, "account"), _field(body, "region"),
                                  _field(body, "image_id"), created)
    except KeyError as exc:
        raise ControlError(404, str(exc.args[0])) from exc
    return {"image_id": image.id, "created": image.creation_date}


def _timestamp(body: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(_field(body, "creation_date"))
    except ValueError as exc:
        raise ControlError(400, f"creation_date: {exc}") from exc


def inventory() -> dict[str, Any]:
    """What exists, per account and region (nothing made by looking)."""
    from moto.autoscaling.models import autoscaling_backends
    from moto.codedeploy.models import codedeploy_backends
    from moto.ec2.models import ec2_backends
    from moto.kms.models import kms_backends
    from moto.s3.models import s3_backends
    from moto.ssm.models import ssm_backends

    from builder.local.emulator.moto_internals import backends

    accounts: dict[str, dict[str, dict[str, list[Any]]]] = {}

    def add(account: str, region: str, kind: str, items: list[Any]) -> None:
        if items:
            accounts.setdefault(account, {}).setdefault(region, {})[kind] = items

    for account, region, ec2 in backends(ec2_backends):
        add(account, region, "images", [
            {"id": image.id, "name": image.name, "state": image.state,
             "public": image.is_public, "created": image.creation_date}
            for image in ec2.amis.values()])
        add(account, region, "launch_templates", [
            {"name": template.name, "id": template.id,
             "default_version": template.default_version_number,
             "latest_version": template.latest_version_number}
            for template in ec2.launch_templates.values()])
    for account, region, autoscaling in backends(autoscaling_backends):
        add(account, region, "auto_scaling_groups", [
            {"name": group.name, "desired": group.desired_capacity,
             "launch_template": group.launch_template}
            for group in autoscaling.autoscaling_groups.values()])
    for account, region, codedeploy in backends(codedeploy_backends):
        add(account, region, "deployment_groups", [
            {"application": application, "name": group.deployment_group_name,
             "auto_scaling_groups": list(group.auto_scaling_groups),
             "deployments": sum(1 for d in codedeploy.deployments.values()
                                if d.deployment_group is group)}
            for application, groups in codedeploy.deployment_groups.items()
            for group in groups.values()])
    for account, region, kms in backends(kms_backends):
        add(account, region, "kms_aliases", sorted(
            alias for key in kms.keys.values() for alias in key.aliases
            if not alias.startswith("alias/aws/")))
    for account, region, ssm in backends(ssm_backends):
        # dict.keys: the parameter dict loads AWS's public parameters when indexed
        add(account, region, "ssm_parameters", sorted(
            name for name in dict.keys(ssm._parameters) if not name.startswith("/aws/")))
    buckets: dict[tuple[str, str], list[str]] = {}
    for account, _partition, s3 in backends(s3_backends):
        for bucket in s3.buckets.values():
            buckets.setdefault((account, bucket.region_name), []).append(bucket.name)
    for (account, region), names in buckets.items():
        add(account, region, "buckets", sorted(names))
    return {"accounts": accounts}


if __name__ == "__main__":
    main()
