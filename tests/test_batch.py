"""run_each: every combo's outcome in order, a failure as a value, Ctrl-C for all."""

from __future__ import annotations

import signal
import threading

import pytest

from builder.batch import Failed, Ok, run_each
from builder.config.models import Combo
from builder.errors import BakeFailed, Interrupted
from builder.interrupts import Cancel

COMBOS = [Combo("demo", "dev", comp) for comp in ("app", "worker", "cron")]


def test_a_failure_is_a_value_and_the_others_go_on() -> None:
    said: list[str] = []

    def step(combo: Combo) -> str:
        if combo.comp == "worker":
            raise BakeFailed("packer build failed: boom")
        return f"ami-{combo.comp}"

    outcomes = run_each(COMBOS, step, jobs=2, cancel=Cancel(),
                        progress=lambda subject, message: said.append(f"{subject}: {message}"),
                        what="bake")

    assert [type(o) for o in outcomes] == [Ok, Failed, Ok]
    assert [o.value for o in outcomes if isinstance(o, Ok)] == ["ami-app", "ami-cron"]
    [failed] = [o for o in outcomes if isinstance(o, Failed)]
    assert failed.combo == COMBOS[1] and failed.exit_code == 1
    assert failed.to_json() == {"app": "demo", "env": "dev", "comp": "worker",
                                "error": "packer build failed: boom", "exit_code": 1}
    assert said == ["demo/dev/worker: bake FAILED: packer build failed: boom"]


def test_ctrl_c_stops_the_batch() -> None:
    cancel = Cancel()
    started = threading.Barrier(2)

    def step(combo: Combo) -> str:
        started.wait(5)
        if combo.comp == "app":
            cancel.trigger(signal.SIGINT)
        cancel.event.wait(5)
        cancel.raise_if_set()
        return combo.comp

    with pytest.raises(Interrupted):
        run_each(COMBOS[:2], step, jobs=2, cancel=cancel, progress=lambda *_: None,
                 what="bake")
