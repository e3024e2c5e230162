"""Where a root's local stack keeps its state, and how a command finds the running
emulator (`<root>/.builder/local/server.json`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from builder.config.layout import Layout
from builder.errors import InputError, OperationFailed
from builder.local import control
from builder.local.emulator.server import SERVER_FILE


def state_dir(layout: Layout) -> Path:
    """The local stack's folder under the root's `.builder/`."""
    return layout.state_dir / "local"


def running_endpoint(layout: Layout) -> str:
    """The emulator's endpoint, or a clear error when `builder local up` hasn't run."""
    info = server_info(layout)
    if not info or "endpoint" not in info:
        raise InputError("the local stack is not running: run `builder local up` first")
    if not is_ours(layout, info):
        raise InputError(f"the local stack is not running here: {SERVER_FILE} belongs to "
                         f"{info.get('state_dir') or 'another root'} (a copied root?); run "
                         "`builder local up` in this one")
    return str(info["endpoint"])


def is_ours(layout: Layout, info: dict[str, Any]) -> bool:
    """server.json (or a health reply) names this root's state folder."""
    return info.get("state_dir") == str(state_dir(layout).resolve())


def server_info(layout: Layout) -> dict[str, Any] | None:
    """What server.json says, or None."""
    try:
        info = json.loads((state_dir(layout) / SERVER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def live_server(layout: Layout) -> dict[str, Any] | None:
    """server.json, when the process it names answers as that process."""
    info = server_info(layout)
    if not info or "endpoint" not in info:
        return None
    if not is_ours(layout, info):
        return None
    try:
        health = control.call(str(info["endpoint"]), "health", timeout=5)
    except OperationFailed:
        return None
    same = all(health.get(key) == info.get(key) for key in ("pid", "state_dir", "token"))
    return info if same else None


def _runs_dir(layout: Layout) -> Path:
    return state_dir(layout) / "runs"


@contextmanager
def command_running(layout: Layout, command: str) -> Iterator[None]:
    """Mark a command that uses the local stack as running (`local down` refuses to pull
    the stack from under it)."""
    marker = _runs_dir(layout) / f"{os.getpid()}.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"pid": os.getpid(), "command": command}) + "\n",
                      encoding="utf-8")
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)


def running_commands(layout: Layout) -> list[str]:
    """The commands of this root running on the local stack now (`<pid>: <command>`);
    markers of processes that are gone are dropped."""
    found = []
    for marker in sorted(_runs_dir(layout).glob("*.json")):
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            with suppress(OSError):
                marker.unlink()
            continue
        except PermissionError:
            pass
        found.append(f"{pid}: builder {info.get('command', '?')}")
    return found
