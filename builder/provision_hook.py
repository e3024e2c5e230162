"""Run by Packer's shell-local provisioner during `builder bake`: hands the running
builder the instance's SSH address and waits until builder has provisioned it.

    python -m builder.provision_hook SOCKET

The address comes from Packer (BUILDER_BUILD_HOST / BUILDER_BUILD_PORT); Ansible then
runs inside builder over direct SSH instead of through Packer's SSH proxy.
"""

from __future__ import annotations

import json
import os
import socket
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m builder.provision_hook SOCKET\n")
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
