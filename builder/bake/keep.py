"""A failed bake's build host kept for debugging (`bake --keep-on-failure`): the SSH key
that reaches it and a record of it, in `.builder/kept/<run id>/` (a 0700 folder, 0600
files), until `builder reap` removes the host and them (after the kept-until time, or
at once with `--run-id`).

The key's path is all that is ever printed or logged; its text is written here only.
"""

from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from builder import private

KEPT_DIR = "kept"
_KEY_FILE = "id_ed25519"
_RECORD_FILE = "kept.json"


@dataclass(frozen=True)
class KeptHost:
    """One kept build host: whose run, until when, and how to reach it."""

    run_id: str
    combo: str
    account: str
    region: str
    until: str  # ISO time; `reap` removes the host after it
    ssh_command: str
    folder: Path

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "combo": self.combo, "account": self.account,
                "region": self.region, "until": self.until, "ssh_command": self.ssh_command,
                "folder": str(self.folder)}

    def due(self, now: datetime, release_run: str | None = None) -> bool:
        """Whether `reap` removes it now: its time has passed, or its run was named."""
        if self.run_id == release_run:
            return True
        try:
            return datetime.fromisoformat(self.until) < now
        except ValueError:  # a record that can't be read keeps nothing
            return True


def ssh_command(key_file: Path, user: str, host: str, port: int) -> str:
    """The command that reaches the kept host (only the key's path in it)."""
    return shlex.join(["ssh", "-i", str(key_file), "-p", str(port), "-o", "IdentitiesOnly=yes",
                       f"{user}@{host}"])


def save(state_dir: Path, *, run_id: str, combo: str, account: str, region: str, until: str,
         private_key: Path, user: str, host: str, port: int) -> KeptHost:
    """Copy the bake's private key to `.builder/kept/<run id>/` and record the host."""
    folder = private.make_folders(state_dir / KEPT_DIR / run_id)
    key_file = private.write_text(folder / _KEY_FILE, private_key.read_text(encoding="utf-8"))
    kept = KeptHost(run_id, combo, account, region, until,
                    ssh_command(key_file, user, host, port), folder)
    private.write_text(folder / _RECORD_FILE, json.dumps(kept.to_json(), indent=2) + "\n")
    return kept


def recorded(state_dir: Path) -> list[KeptHost]:
    """Every kept host of this root (a record that can't be read counts as expired)."""
    found = []
    for folder in sorted((state_dir / KEPT_DIR).glob("*/")):
        try:
            data = json.loads((folder / _RECORD_FILE).read_text(encoding="utf-8"))
            found.append(KeptHost(str(data["run_id"]), str(data["combo"]),
                                  str(data["account"]), str(data["region"]),
                                  str(data["until"]), str(data["ssh_command"]), folder))
        except (OSError, ValueError, KeyError, TypeError):
            found.append(KeptHost(folder.name, "", "", "", "", "", folder))
    return found


def forget(kept: KeptHost) -> None:
    """Remove a kept host's key and record (its host is gone)."""
    shutil.rmtree(kept.folder, ignore_errors=True)
