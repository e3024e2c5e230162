"""Where a root's local stack keeps its state, and how a command finds the running
emulator (`<root>/.builder/local/server.json`)."""

from __future__ import annotations

import json
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
