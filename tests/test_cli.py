"""The help of every command reads like the tools users know: a one-line summary, no
type labels, examples."""

from __future__ import annotations

import re

import pytest

from builder import docs

PATHS = list(docs.command_paths())


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "builder")
def test_help_has_a_summary_no_type_labels_and_examples(path: tuple[str, ...]) -> None:
    text = docs.help_text(path)
    usage, summary, *_ = text.split("\n\n")
    assert usage.startswith(f"Usage: {' '.join(('builder', *path))} ")
    assert "{" not in usage, usage  # required arguments read APP ENV COMP, not {app_name}
    summary = summary.strip()
    assert "\n" not in summary and summary.endswith("."), summary
    assert not re.search(r"<(str|bool|int|float|path)>", text), text
    assert "Examples:" in text
    examples = text.split("Examples:", 1)[1].split()
    assert examples[0] == "builder" and examples[1:1 + len(path)] == list(path)


@pytest.mark.parametrize("path", [path for path in PATHS if path], ids=" ".join)
def test_summary_fits_the_command_list(path: tuple[str, ...]) -> None:
    parent = docs.help_text(path[:-1])
    summary = docs.help_text(path).split("\n\n")[1].strip()
    assert re.search(rf"^  {re.escape(path[-1])} +{re.escape(summary)}$", parent, re.MULTILINE), \
        f"{path[-1]!r} is listed without its whole summary {summary!r}:\n{parent}"
