"""The fault-injection suite's table: what each case injected, what it left, how a
re-run ended, printed at the end of the session (every leftover count must be 0).

Rows go to a file named by BUILDER_FAULTS_TABLE, set before any xdist worker starts, so
the table also holds the workers' rows. The hooks are plugged in by tests/conftest.py
(it is loaded on the controller; this folder's conftest would only be on workers).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from tests.faults.leftovers import TABLE_ENV


def pytest_configure(config: pytest.Config) -> None:
    if TABLE_ENV not in os.environ:
        handle, name = tempfile.mkstemp(prefix="faults-table-", suffix=".jsonl")
        os.close(handle)
        os.environ[TABLE_ENV] = name


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if hasattr(terminalreporter.config, "workerinput"):  # an xdist worker: not its to print
        return
    table = Path(os.environ.get(TABLE_ENV, ""))
    if not table.is_file():
        return
    rows = [json.loads(line) for line in table.read_text().splitlines() if line.strip()]
    table.unlink()
    if not rows:
        return
    headers = ("case", "faults injected", "leftovers", "re-run outcome")
    cells = [headers, *[(r["case"], r["faults"], str(r["leftovers"]), r["rerun"])
                        for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    terminalreporter.section("fault injection")
    for n, row in enumerate(cells):
        terminalreporter.write_line("  ".join(c.ljust(w) for c, w in zip(row, widths,
                                                                          strict=True)))
        if n == 0:
            terminalreporter.write_line("  ".join("-" * w for w in widths))
