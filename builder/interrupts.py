"""Ctrl-C and SIGTERM: builder stops its children itself and cleans up before exiting.

Children run in their own sessions (builder.process.start), so a terminal's Ctrl-C
reaches only builder. The handler sets a flag every step polls and calls the stop
hooks running steps registered (e.g. "send SIGINT to packer"), then the steps unwind
through their `finally` blocks and the command exits 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from builder.errors import Interrupted


class Cancel:
    """A cancellation flag shared by every thread of one command."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self._hooks: dict[int, Callable[[], None]] = {}
        # Reentrant: the signal handler runs `trigger` on the main thread, possibly while
        # that thread is inside `on_cancel` holding the lock.
        self._lock = threading.RLock()
        self._next = 0

    def is_set(self) -> bool:
        return self.event.is_set()

    def trigger(self, signum: int = signal.SIGINT) -> None:
        with self._lock:
            if self.signum is None:
                self.signum = signum
            self.event.set()
            hooks = list(self._hooks.values())
        for hook in hooks:
            hook()

    def raise_if_set(self) -> None:
        if self.event.is_set():
            raise Interrupted(self.signum or signal.SIGINT)

    @contextmanager
    def on_cancel(self, hook: Callable[[], None]) -> Iterator[None]:
        """Run `hook` if cancellation happens while inside the block (or already has)."""
        with self._lock:
            key = self._next
            self._next += 1
            self._hooks[key] = hook
            already = self.event.is_set()
        if already:
            hook()
        try:
            yield
        finally:
            with self._lock:
                self._hooks.pop(key, None)


@contextmanager
def handle_signals(cancel: Cancel) -> Iterator[Cancel]:
    """Route SIGINT/SIGTERM to `cancel` for the duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        cancel.trigger(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield cancel
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
