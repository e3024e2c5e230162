"""The background thread an emulated long-running AWS operation (a CodeDeploy
deployment, an instance refresh) moves on in: a step under the server's lock every
tick, the server told when something changed (so its state is saved)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Stepper:
    """Calls `step()` under `lock` about four times per emulated step; subclasses say
    what a step is and how long one lasts."""

    def __init__(self, lock: threading.RLock, name: str,
                 on_change: Callable[[], None] = lambda: None):
        self._lock = lock
        self._on_change = on_change
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def step_seconds_now(self) -> float:
        """How long one emulated step lasts."""
        raise NotImplementedError

    def step(self) -> bool:
        """Move every operation on that is due; whether one moved."""
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stopping.wait(min(0.25, max(0.02, self.step_seconds_now() / 4))):
            with self._lock:
                if self.step():
                    self._on_change()
