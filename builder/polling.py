"""The one way builder waits for something outside it to happen: call a check until it
has an answer, between calls a wait that Ctrl-C cuts short, up to a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from builder.errors import TimedOut

if TYPE_CHECKING:
    from builder.interrupts import Cancel

T = TypeVar("T")


def poll_until(check: Callable[[], T | None], *, timeout_s: float,
               interval_s: float | Callable[[], float], what: str,
               cancel: Cancel | None = None) -> T:
    """Call `check` until it returns something other than None, and return that.

    Between calls wait `interval_s` (a callable: asked before each wait, for intervals
    that grow); the last wait ends at the deadline, where `check` has one more go.
    TimedOut ("<what>: not done after ...") once `timeout_s` has passed; Interrupted as
    soon as `cancel` is set. Errors of `check` propagate.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found is not None:
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimedOut(f"{what}: not done after {timeout_s:g}s")
        wait = min(interval_s() if callable(interval_s) else interval_s, left)
        if cancel is None:
            time.sleep(wait)
        elif cancel.event.wait(wait):
            cancel.raise_if_set()


class Growing:
    """Intervals for `poll_until` that start at `first_s` and grow by `factor` up to
    `longest_s`: quick answers for quick things, few calls for slow ones. `reset` starts
    over (news came: the next may come soon)."""

    def __init__(self, first_s: float, *, factor: float, longest_s: float):
        self._first = first_s
        self._factor = factor
        self._longest = longest_s
        self._next = first_s

    def __call__(self) -> float:
        current = self._next
        self._next = min(current * self._factor, self._longest)
        return current

    def reset(self) -> None:
        self._next = self._first
