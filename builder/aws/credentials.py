"""Credentials that refresh, for Packer and its children (AWS SDK for Go, botocore).

A bake may outlast the env role's session (1 h by default). Instead of frozen keys,
Packer gets a private AWS config file whose profile has a `credential_process`: this
module run as `python -m builder.aws.credentials SOCKET`. It asks the running `builder
bake` over a unix socket in the bake's private folder for the role's current
credentials and prints them in the credential_process format (`Version`,
`AccessKeyId`, `SecretAccessKey`, `SessionToken`, `Expiration`); the SDK runs it again
once they expire. Packer 1.6.6's SDK (aws-sdk-go v1) reads `credential_process` from a
shared config profile (its processcreds provider) when AWS_SDK_LOAD_CONFIG is set and
no static keys are in the environment, which take precedence over a profile.

No secret is on a command line or in the file: the keys only pass through the socket
(0600 in a 0700 folder, the same trust as the provisioning callback).
"""

from __future__ import annotations

import json
import shlex
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

PROFILE = "builder"
_ACCEPT_POLL_S = 0.2
_STOP_WAIT_S = 5.0
# Static keys in Packer's environment would win over the profile (aws-sdk-go v1's order).
STATIC_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "AWS_SECURITY_TOKEN")

CredentialsFn = Callable[[], dict[str, object]]


def config_text(socket_path: Path, region: str) -> str:
    """The AWS config file whose profile calls back into this process."""
    command = shlex.join([sys.executable, "-m", "builder.aws.credentials", str(socket_path)])
    return f"[profile {PROFILE}]\nregion = {region}\ncredential_process = {command}\n"


def packer_env(config_file: Path, region: str) -> dict[str, str]:
    """Packer's AWS environment: the private config's profile, no static keys (the
    caller removes any inherited ones, see STATIC_KEYS)."""
    return {"AWS_CONFIG_FILE": str(config_file), "AWS_PROFILE": PROFILE,
            "AWS_SDK_LOAD_CONFIG": "1", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_REGION": region, "AWS_DEFAULT_REGION": region}


@contextmanager
def serving(socket_path: Path, credentials: CredentialsFn, *, name: str) -> Iterator[None]:
    """Answer every connection on `socket_path` with `credentials()` (the
    credential_process JSON, or {"error"}) while the block runs."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(socket_path))
    socket_path.chmod(0o600)
    server.listen(8)
    server.settimeout(_ACCEPT_POLL_S)
    done = threading.Event()
    thread = threading.Thread(target=_serve, args=(server, credentials, done), name=name,
                              daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=_STOP_WAIT_S)
        server.close()


def _serve(server: socket.socket, credentials: CredentialsFn, done: threading.Event) -> None:
    while not done.is_set():
        try:
            connection, _ = server.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        with connection:
            try:
                answer = credentials()
            except Exception as exc:  # told to the SDK, which fails the call that needed it
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            with suppress(OSError):
                connection.sendall(json.dumps(answer).encode() + b"\n")


def main(argv: list[str] | None = None) -> int:
    """`python -m builder.aws.credentials SOCKET`: print the credentials (exit 1 and a
    line on stderr when builder can't give them)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m builder.aws.credentials SOCKET\n")
        return 2
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(60)
            client.connect(args[0])
            answer = json.loads(client.makefile("r", encoding="utf-8").readline())
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"builder credentials: the bake at {args[0]} does not answer: {exc}\n")
        return 1
    if "error" in answer:
        sys.stderr.write(f"builder credentials: {answer['error']}\n")
        return 1
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
