"""`builder status --html FILE`: the lineage page. One self-contained HTML file (inline
CSS, no script, nothing fetched) with a table per app of env x comp: the AMI each launch
template launches, its age and status, and its chain base image → bake → promoted
copies, each link an anchor to the row of the combo that holds the other end.

Every name and tag value on the page is escaped: tags are anyone's to write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from itertools import groupby
from pathlib import Path
from typing import Any

from builder.aws.images import AmiStatus
from builder.config.models import Combo
from builder.errors import InputError
from builder.pipelines.due import Action
from builder.pipelines.status import ComboStatus, StatusReport, age_text

_NONE = "\u2014"  # an em dash: nothing known
_HEADERS = ("env", "comp", "AMI running", "age", "status", "base image", "bake",
            "promoted copies", "packages", "due", "last deployment")

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2430; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; }
p.summary { margin: 0 0 12px; color: #4a5565; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #d5dae1; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; }
td.env { font-weight: 600; background: #f7f8fa; }
code { font: 12px ui-monospace, monospace; }
small { color: #5b6677; }
tr.due td { background: #fff4d6; }
tr.due td.due { color: #8a5a00; font-weight: 600; }
tr.error td { background: #fde8e8; }
tr:target td { outline: 2px solid #2f6fde; outline-offset: -2px; }
a { color: #1f5fc4; }
.status { border-radius: 3px; padding: 0 5px; font-size: 12px; background: #e3e7ed; }
.status.verified { background: #d5f0dc; color: #17632f; }
.status.released { background: #d9e8fb; color: #1c4f96; }
.status.baked { background: #ece3fb; color: #55309a; }
.status.failed { background: #fbd9d9; color: #8f1f1f; }
.legend span { margin-right: 16px; }
"""


@dataclass(frozen=True)
class PageWritten:
    """The lineage page written: where, and what it shows."""

    path: Path
    combos: int
    due: int

    exit_code = 0

    def to_json(self) -> dict[str, Any]:
        return {"html": str(self.path), "combos": self.combos, "due": self.due}

    def to_text(self) -> str:
        return f"wrote {self.path}: {self.combos} combos, {self.due} due"


def write_page(report: StatusReport, path: Path) -> PageWritten:
    """Write the report's lineage page to `path` (replacing it)."""
    try:
        path.write_text(render(report), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--html {path}: {exc.strerror or exc}") from exc
    return PageWritten(path, len(report.combos), sum(1 for c in report.combos if c.rebuild_due))


def render(report: StatusReport) -> str:
    """The whole page as one HTML document."""
    shown = {c.combo for c in report.combos}
    due = sum(1 for c in report.combos if c.rebuild_due)
    sections = [_app_section(app, list(rows), shown, report)
                for app, rows in groupby(report.combos, key=lambda c: c.combo.app)]
    at = report.at.isoformat(timespec="seconds")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>builder status {_e(at)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>AMI lineage</h1>",
        f'<p class="summary">{len(report.combos)} combos, {due} due, at {_e(at)}. '
        "Each row is what the launch template launches; its chain runs from the base "
        "image through the bake to the copies promoted to other envs.</p>",
        '<p class="legend"><span class="status verified">verified</span>'
        '<span class="status released">released</span>'
        '<span class="status baked">baked</span>'
        '<span style="background:#fff4d6;padding:0 5px">rebuild or promotion due</span></p>',
        *sections,
        "</body></html>",
        "",
    ])


def anchor(combo: Combo) -> str:
    """The id of a combo's row (names are `[a-z0-9-]`, so dots can't collide)."""
    return f"{combo.app}.{combo.env}.{combo.comp}"


def _app_section(app: str, rows: Sequence[ComboStatus], shown: set[Combo],
                 report: StatusReport) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in _HEADERS)
    body = "\n".join(_row(row, shown, report) for row in rows)
    return (f'<h2 id="app-{_e(app)}">{_e(app)}</h2>\n<table><thead><tr>{head}</tr></thead>'
            f"<tbody>\n{body}\n</tbody></table>")


def _row(row: ComboStatus, shown: set[Combo], report: StatusReport) -> str:
    combo = row.combo
    start = f'<tr id="{_e(anchor(combo))}"'
    first = f'<td class="env">{_e(combo.env)}</td><td>{_e(combo.comp)}</td>'
    if row.error:
        return (f'{start} class="error">{first}<td colspan="{len(_HEADERS) - 2}">error: '
                f"{_e(row.error)}</td></tr>")
    cells = [
        _ami(row),
        _e(age_text(row.age_days(report.at))),
        _status(row.status),
        _base(row),
        _bake(row, shown),
        _joined(_link(copy, f"{copy.env}: {ami_id}", shown) for copy, ami_id in row.copies),
        _e(str(row.packages)) if row.packages is not None else _NONE,
    ]
    due_text = _due(row)
    deployment = row.deployment
    last = (f"{_e(deployment.status)} <code>{_e(deployment.id)}</code><br>"
            f"<small>{_e(deployment.time)}</small>" if deployment else _NONE)
    tds = "".join(f"<td>{cell}</td>" for cell in cells)
    css = ' class="due"' if row.rebuild_due else ""
    return f'{start}{css}>{first}{tds}<td class="due">{due_text}</td><td>{last}</td></tr>'


def _ami(row: ComboStatus) -> str:
    return _image_cell(row.ami_id, row.ami_name, "not released", row.unreleased)


def _status(status: str) -> str:
    if not status:
        return _NONE
    known = status if status in tuple(AmiStatus) else "other"
    return f'<span class="status {known}">{_e(status)}</span>'


def _base(row: ComboStatus) -> str:
    return _image_cell(row.base_ami, row.base_name, "newer", row.newer_base)


def _image_cell(image_id: str, name: str, label: str, other: str) -> str:
    """An AMI's id and name, and another AMI that matters beside it (`label`: its id)."""
    if not image_id:
        return _NONE
    text = f"<code>{_e(image_id)}</code>"
    if name:
        text += f"<br><small>{_e(name)}</small>"
    if other:
        text += f"<br><small>{label}: <code>{_e(other)}</code></small>"
    return text


def _bake(row: ComboStatus, shown: set[Combo]) -> str:
    """Where the running AMI was baked: here, or (a promoted copy) the source env's row."""
    if row.promoted_from:
        env, _, ami_id = row.promoted_from.partition("/")
        source = Combo(row.combo.app, env, row.combo.comp)
        return "copy of " + _link(source, f"{env}: {ami_id}", shown)
    if row.base_ami:  # tagged by a bake of this combo
        return "baked here"
    return _NONE


def _due(row: ComboStatus) -> str:
    if row.due is None:
        return _NONE
    if not row.rebuild_due:
        return "no"
    verb = "rebuild due" if row.due.action == Action.BAKE else "promotion due"
    return f"{verb}: {_e(row.due.reason)}"


def _link(combo: Combo, text: str, shown: set[Combo]) -> str:
    """`text` linking to the combo's row when the page has it."""
    if combo not in shown:
        return _e(text)
    return f'<a href="#{_e(anchor(combo))}">{_e(text)}</a>'


def _joined(parts: Iterable[str]) -> str:
    return "<br>".join(parts) or _NONE


def _e(text: str) -> str:
    return escape(text, quote=True)
