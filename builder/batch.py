"""One step over many combos in parallel (`bake --all`, `bake --release`, `rebuild`):
each combo's BuilderError becomes a value and the others go on; Ctrl-C stops them all."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from builder.config.models import Combo
from builder.errors import BuilderError, Interrupted
from builder.interrupts import Cancel
from builder.output import ProgressFn

R = TypeVar("R")
T = TypeVar("T")
DEFAULT_JOBS = 4  # combos at once without -j


@dataclass(frozen=True)
class Ok(Generic[R]):
    """What the step returned for one combo."""

    combo: Combo
    value: R


@dataclass(frozen=True)
class Failed:
    """The step failed for one combo: its error, as a value."""

    combo: Combo
    error: BuilderError

    @property
    def exit_code(self) -> int:
        return self.error.exit_code

    def to_json(self) -> dict[str, Any]:
        return {"app": self.combo.app, "env": self.combo.env, "comp": self.combo.comp,
                "error": self.error.message, "exit_code": self.exit_code}

    def to_text(self) -> str:
        return f"{self.combo}: FAILED: {self.error.message}"


def run_each(combos: Sequence[Combo], step: Callable[[Combo], R], *, jobs: int | None,
             cancel: Cancel, progress: ProgressFn, what: str) -> list[Ok[R] | Failed]:
    """`step` for every combo, at most `jobs` (default DEFAULT_JOBS) at once; the outcomes
    in the order of `combos`. A failure is said on `progress` ("<what> FAILED: ...") and
    kept; Interrupted (and any bug) propagates once the running steps have ended."""

    def one(combo: Combo) -> Ok[R] | Failed:
        try:
            return Ok(combo, step(combo))
        except Interrupted:
            raise
        except BuilderError as exc:
            progress(str(combo), f"{what} FAILED: {exc.message}")
            return Failed(combo, exc)

    outcomes = in_threads(combos, one, jobs=jobs or DEFAULT_JOBS, what=what)
    cancel.raise_if_set()
    return outcomes


def in_threads(items: Sequence[T], step: Callable[[T], R], *, jobs: int, what: str) -> list[R]:
    """`step` for every item, at most `jobs` at once, the results in the order of
    `items`; an exception propagates once the running steps have ended."""
    workers = max(1, min(jobs, len(items)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=what) as pool:
        return list(pool.map(step, items))
