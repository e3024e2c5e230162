"""Counts the tasks a playbook will run, before the first one starts, so builder can show
"task k/N". Runs inside ansible-playbook; writes the count to BUILDER_TASK_COUNT_FILE.

Static content (roles, import_*) is counted; what a dynamic include_* adds is not known
until it runs, so N is a floor that builder raises when k passes it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: builder_tasks
type: aggregate
short_description: writes the number of tasks of a playbook run to a file for builder
"""

_META_ACTIONS = frozenset({"meta", "ansible.builtin.meta", "ansible.legacy.meta"})


class CallbackModule(CallbackBase):  # type: ignore[misc]
    """Writes the task count of the playbook when it starts."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "builder_tasks"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_start(self, playbook: Any) -> None:
        target = os.environ.get("BUILDER_TASK_COUNT_FILE")
        if not target:
            return
        total = 0
        for play in playbook.get_plays():
            # Facts are gathered unless the play says not to: an implicit first task.
            total += 0 if play.gather_facts is False else 1
            total += sum(_count(block) for block in play.compile())
        Path(target).write_text(str(total), encoding="utf-8")


def _count(block: Any) -> int:
    """Tasks of a block that emit a task start: the block and its `always`, not the
    `rescue` (it runs only on failure), not implicit meta tasks."""
    total = 0
    for item in [*block.block, *block.always]:
        if hasattr(item, "block"):
            total += _count(item)
        elif item.action not in _META_ACTIONS:
            total += 1
    return total
