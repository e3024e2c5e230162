"""The local stack as seen from a builder command: where it runs, whether it does."""

from __future__ import annotations

import json
from pathlib import Path

from builder.errors import InputError
from builder.layout import Layout


def state_dir(layout: Layout) -> Path:
    return layout.state_dir / "local"


def running_endpoint(layout: Layout) -> str:
    """The emulator's endpoint, or a clear error when `builder local up` hasn't run."""
    state = state_dir(layout) / "server.json"
    try:
        info = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = None
    if not info or "endpoint" not in info:
        raise InputError("the local stack is not running: run `builder local up` first")
    return str(info["endpoint"])
