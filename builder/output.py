"""What the CLI prints: results as text or as one JSON document on stdout, progress
and errors on stderr. Library code reports progress through a `Progress` it is given
and never prints."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

# What steps report progress to: progress(subject, message); `Progress` or `silent`.
ProgressFn = Callable[[str, str], None]


class Result(Protocol):
    """What every command returns: one value, two ways to show it, and the exit code
    (0 unless it reports a failure; errors raised are the CLI's to map)."""

    @property
    def exit_code(self) -> int: ...

    def to_json(self) -> Any: ...

    def to_text(self) -> str: ...


def emit(result: Result, *, as_json: bool) -> None:
    """Print a result on stdout: one JSON document, or its text."""
    out = sys.stdout
    if as_json:
        out.write(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    else:
        text = result.to_text()
        if text:
            out.write(text.rstrip("\n") + "\n")
    out.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain, aligned text table (no colour: it goes to logs and CI output too)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class Progress:
    """Progress lines on stderr, safe to share between parallel bakes.

    `quiet` keeps them out (tests that read stderr for errors only).
    """

    def __init__(self, *, quiet: bool = False):
        self._quiet = quiet
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def __call__(self, subject: str, message: str) -> None:
        if self._quiet:
            return
        elapsed = time.monotonic() - self._start
        with self._lock:
            sys.stderr.write(f"[{elapsed:6.1f}s] {subject}: {message}\n")
            sys.stderr.flush()


def silent(subject: str, message: str) -> None:
    """A progress sink that drops everything (library callers that don't care)."""
