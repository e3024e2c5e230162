"""The one way builder runs other programs: a clean environment, argv logged, and a
non-zero exit turned into ProcessFailed (or ToolMissing when the program isn't there)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.errors import ProcessFailed, ToolMissing

log = logging.getLogger("builder.process")

# Never handed on to children: credentials reach a child only when passed explicitly
# (Packer gets the env's own), and the vault password never does.
_WITHHELD_PREFIXES = ("AWS_", "BUILDER_VAULT_PASSWORD", "BUILDER_LOCAL_VAULT_PASSWORD")
_TAIL_CHARS = 2000


@dataclass(frozen=True)
class Completed:
    """A finished command: its argv, exit status and output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: builder's own secrets withheld, `extra` added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_WITHHELD_PREFIXES)}
    env.update(extra or {})
    return env


def require(program: str, hint: str) -> str:
    """The full path of a program, or ToolMissing with how to get it."""
    found = shutil.which(program)
    if found is None:
        raise ToolMissing(f"{program} not found on PATH: {hint}")
    return found


def run(
    argv: Sequence[str],
    *,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
    stdin_text: str | None = None,
) -> Completed:
    """Run to completion, capturing output. `what` names the step in errors."""
    argv = tuple(str(a) for a in argv)
    log.debug("run: %s", " ".join(argv))
    try:
        proc = subprocess.run(
            argv, cwd=cwd, env=child_env(env), capture_output=True, text=True,
            timeout=timeout, input=stdin_text, check=False,
        )
    except FileNotFoundError as exc:
        raise ToolMissing(f"{what}: {argv[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise ProcessFailed(f"{what}: timed out after {timeout:.0f}s", returncode=-1) from exc
    done = Completed(argv, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-_TAIL_CHARS:]
        last = tail.splitlines()[-1] if tail else f"exit code {proc.returncode}"
        raise ProcessFailed(f"{what} failed: {last}", returncode=proc.returncode, output_tail=tail)
    return done


def start(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdout: int | None = subprocess.PIPE,
    stderr: int | None = subprocess.STDOUT,
) -> subprocess.Popen[str]:
    """Start a long-running child whose output the caller reads (Packer, sshd, the
    emulator). In a session of its own, so a terminal's Ctrl-C reaches builder first
    and builder decides how the child stops."""
    argv = [str(a) for a in argv]
    log.debug("start: %s", " ".join(argv))
    try:
        return subprocess.Popen(
            argv, cwd=cwd, env=child_env(env), stdout=stdout, stderr=stderr,
            stdin=subprocess.DEVNULL, text=True, start_new_session=True, bufsize=1,
        )
    except FileNotFoundError as exc:
        raise ToolMissing(f"{argv[0]} not found") from exc
