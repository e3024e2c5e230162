"""Packer's callback into the running builder: both ends of one small protocol.

During `builder bake`, Packer's shell-local provisioner runs

    python -m builder.provision.hook SOCKET

which sends the instance's SSH address (BUILDER_BUILD_HOST / BUILDER_BUILD_PORT, set
by Packer) as one JSON line over a unix socket, then waits for one JSON line back:
`{"ok": bool, "message": str}`. On builder's side, `listening()` serves that socket and
runs the provisioning (ansible-runner over direct SSH, not through Packer's SSH proxy).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

# Provisions the instance at (host, port) and returns the verdict sent back to Packer.
ProvisionFn = Callable[[str, int], dict[str, Any]]

_ACCEPT_POLL_S = 0.5
_STOP_WAIT_S = 30


def command(socket_path: Path) -> str:
    """The shell-local command line that calls back into this process."""
    return shlex.join([sys.executable, "-m", "builder.provision.hook", str(socket_path)])


@contextmanager
def listening(socket_path: Path, provision: ProvisionFn, *, name: str
              ) -> Iterator[threading.Thread]:
    """Serve one provisioning request on `socket_path` in a thread while the block runs."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(socket_path))
    server.listen(1)
    server.settimeout(_ACCEPT_POLL_S)
    done = threading.Event()
    thread = threading.Thread(target=_serve, args=(server, provision, done), name=name,
                              daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        done.set()
        thread.join(timeout=_STOP_WAIT_S)
        server.close()


def _serve(server: socket.socket, provision: ProvisionFn, done: threading.Event) -> None:
    while not done.is_set():
        try:
            connection, _ = server.accept()
        except TimeoutError:
            continue
        with connection:
            connection.settimeout(None)
            request = json.loads(connection.makefile("r", encoding="utf-8").readline())
            verdict = provision(str(request["host"]), int(request["port"]))
            # Packer may have been stopped meanwhile; the caller keeps the verdict too.
            with suppress(OSError):
                connection.sendall(json.dumps(verdict).encode() + b"\n")
        return


def main(argv: list[str]) -> int:
    """The Packer end: send the address, wait for the verdict, exit 0 or 1."""
    if len(argv) != 1:
        sys.stderr.write("usage: python -m builder.provision.hook SOCKET\n")
        return 2
    request = {"host": os.environ.get("BUILDER_BUILD_HOST", ""),
               "port": int(os.environ.get("BUILDER_BUILD_PORT", "22") or 22)}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(argv[0])
        connection.sendall(json.dumps(request).encode() + b"\n")
        reply = connection.makefile("r", encoding="utf-8").readline()
    if not reply:
        sys.stderr.write("builder: provisioning ended without a result\n")
        return 1
    verdict = json.loads(reply)
    sys.stderr.write(f"builder: {verdict.get('message', '')}\n")
    return 0 if verdict.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
