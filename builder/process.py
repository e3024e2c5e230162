"""The one way builder runs other programs: a clean environment, argv logged, and a
non-zero exit turned into ProcessFailed (or ToolMissing when the program isn't there);
and the one way it stops them."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.errors import ProcessFailed, TimedOut, ToolMissing
from builder.polling import poll_until

log = logging.getLogger("builder.process")

# Never handed on to children: credentials reach a child only when passed explicitly
# (Packer gets the env's own), and the vault password never does.
_WITHHELD_PREFIXES = ("AWS_", "BUILDER_VAULT_PASSWORD", "BUILDER_LOCAL_VAULT_PASSWORD")
_TAIL_CHARS = 2000
_KILLED_WAIT_S = 5.0  # for the kernel to take down what SIGKILL hit
_STOP_POLL_S = 0.05

# A child builder started (and can reap), or the pid of a process found otherwise (an
# emulator an earlier run started, leftovers of a run found under /proc).
Child = subprocess.Popen[str] | int


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
    umask: int = -1,
) -> subprocess.Popen[str]:
    """Start a long-running child whose output the caller reads (Packer, sshd, the
    emulator). In a session of its own, so a terminal's Ctrl-C reaches builder first
    and builder decides how the child stops. `umask` (when given) is the child's."""
    argv = [str(a) for a in argv]
    log.debug("start: %s", " ".join(argv))
    try:
        return subprocess.Popen(
            argv, cwd=cwd, env=child_env(env), stdout=stdout, stderr=stderr,
            stdin=subprocess.DEVNULL, text=True, start_new_session=True, bufsize=1,
            umask=umask,
        )
    except FileNotFoundError as exc:
        raise ToolMissing(f"{argv[0]} not found") from exc


def signal_group(child: Child, signum: int) -> None:
    """Send `signum` to a running child and, when it leads a process group (every child
    `start` makes does), to the whole group: what it started goes with it."""
    pid = child if isinstance(child, int) else child.pid
    if not _running(child):
        return
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:  # it ended in between
        pass


def stop(*children: Child, signum: int | None = signal.SIGTERM, grace_s: float = 5.0) -> bool:
    """Stop children with what they started: `signum` to each (None: they were already
    asked, e.g. Packer's SIGINT on Ctrl-C), SIGKILL to those still running after
    `grace_s`. True once every one is gone (and, for ours, reaped)."""
    if signum is not None:
        for child in children:
            signal_group(child, signum)

    def gone() -> bool | None:
        return not any(_running(child) for child in children) or None

    try:
        poll_until(gone, timeout_s=grace_s, interval_s=_STOP_POLL_S, what="stopping")
        return True
    except TimedOut:
        log.debug("still running after %gs; killing", grace_s)
    for child in children:
        signal_group(child, signal.SIGKILL)
    try:
        poll_until(gone, timeout_s=_KILLED_WAIT_S, interval_s=_STOP_POLL_S, what="killing")
    except TimedOut:
        return False
    return True


def alive(pid: int) -> bool:
    """Whether a process of this host exists (someone else's counts: it is alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def on_this_host_and_gone(host: str, pid: str) -> bool:
    """Whether a process recorded as `host` and `pid` ran here and no longer exists;
    another host's process can't be checked (False)."""
    return (host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid()
            and not alive(int(pid)))


def _running(child: Child) -> bool:
    if not isinstance(child, int):
        return child.poll() is None
    try:  # our child without its Popen (tests run the stack in-process): reap it
        done, _ = os.waitpid(child, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        pass
    try:
        os.kill(child, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    try:  # a zombie has ended: whoever reaps orphans here may never get to it
        stat = Path(f"/proc/{child}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
