"""Looking for secrets where they must not be: in any process's argv or environment
while something runs, and in files afterwards."""

from __future__ import annotations

import re
import threading
from pathlib import Path

# A real key block, not just the header string every ssh/TLS library carries.
PRIVATE_KEY_BLOCK = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*\n[A-Za-z0-9+/=]{40,}")


class ProcessScanner:
    """Reads every process's argv and environment until the block ends."""

    def __init__(self, needles: list[bytes]):
        self.needles = needles
        self.hits: list[str] = []
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcessScanner:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for proc in Path("/proc").glob("[0-9]*"):
                for part in ("cmdline", "environ"):
                    try:
                        data = (proc / part).read_bytes()
                    except OSError:
                        continue
                    self.hits.extend(f"{proc.name}/{part}: {data[:200]!r}"
                                     for needle in self.needles if needle in data)
            self.scans += 1
            self._stop.wait(0.05)


# The local emulator's saved state stands in for AWS's own storage: an SSM SecureString
# lives there as it lives in the account (the file is 0600 under a 0700 folder).
EMULATOR_STATE = Path("local") / "state.pickle"


def files_containing(folder: Path, needles: list[bytes]) -> list[str]:
    """Files below `folder` holding a needle or a private key block (the emulator's
    saved state, which plays AWS, is not builder's output)."""
    found = []
    for path in folder.rglob("*"):
        if not path.is_file() or path.is_symlink() or path.relative_to(folder) == EMULATOR_STATE:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        found += [f"{path}: {needle!r}" for needle in needles if needle in data]
        if PRIVATE_KEY_BLOCK.search(data):
            found.append(f"{path}: a private key")
    return found
