"""Waiting and stopping: poll_until's deadline and Ctrl-C, process.stop on real children
(one that ends on SIGTERM, one that ignores it, and what they started)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from builder import process
from builder.errors import Interrupted, TimedOut
from builder.interrupts import Cancel
from builder.polling import Growing, poll_until


def test_poll_until_returns_the_first_answer() -> None:
    answers = iter([None, None, "ready"])

    assert poll_until(lambda: next(answers), timeout_s=5, interval_s=0.01, what="x") == "ready"


def test_poll_until_times_out_with_what_it_waited_for() -> None:
    started = time.monotonic()

    with pytest.raises(TimedOut, match=r"^the thing: not done after 0.2s$"):
        poll_until(lambda: None, timeout_s=0.2, interval_s=0.05, what="the thing")

    assert 0.2 <= time.monotonic() - started < 1.0


def test_poll_until_stops_at_once_on_cancel() -> None:
    cancel = Cancel()
    threading.Timer(0.1, cancel.trigger).start()
    started = time.monotonic()

    with pytest.raises(Interrupted):
        poll_until(lambda: None, timeout_s=30, interval_s=10, what="x", cancel=cancel)

    assert time.monotonic() - started < 2


def test_growing_intervals_grow_to_their_longest_and_start_over() -> None:
    interval = Growing(1, factor=2, longest_s=5)

    assert [interval() for _ in range(5)] == [1, 2, 4, 5, 5]
    interval.reset()
    assert interval() == 1


def _child(script: str) -> tuple[subprocess.Popen[str], list[str]]:
    """A Python child (in a session of its own, as `start` makes every child) that says
    "up ..." once it is set; what followed "up"."""
    child = process.start([sys.executable, "-c", script])
    assert child.stdout is not None
    first, *rest = child.stdout.readline().split()
    assert first == "up"
    return child, rest


def _ended(pid: int) -> bool:
    """Gone, or a zombie (an orphan waits for whoever reaps orphans here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def test_stop_ends_a_child_and_what_it_started() -> None:
    child, [grandchild_pid] = _child("import subprocess, time\n"
                                     "grandchild = subprocess.Popen(['sleep', '60'])\n"
                                     "print('up', grandchild.pid, flush=True)\n"
                                     "time.sleep(60)\n")
    grandchild = int(grandchild_pid)

    assert process.stop(child, grace_s=5)

    assert child.returncode == -signal.SIGTERM
    assert poll_until(lambda: _ended(grandchild) or None, timeout_s=5, interval_s=0.05,
                      what="the grandchild")


def test_stop_kills_a_child_that_ignores_the_signal() -> None:
    child, _ = _child("import signal, time\n"
                      "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                      "print('up', flush=True)\n"
                      "time.sleep(60)\n")
    started = time.monotonic()

    assert process.stop(child, grace_s=0.3)

    assert child.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5
