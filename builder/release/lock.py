"""One release (or promotion into, or prune of) an (app, env, comp) at a time, and one
bake of it, across machines and CI runners.

The lock is an item in the DynamoDB table `builder-locks` of the env's own account and
region (made on first use: on-demand billing, key `lock`), written with a conditional
put. It carries its owner (user@host:pid), start time and expiry; an expired lock is
taken over silently. A live one makes the second run wait up to `wait_s`, then stops it
with LockedError (at once when its holder ran on this host and is gone: killed);
`--break-lock` takes it anyway (for a holder that died before its expiry). The holder
removes it on every way out: success, failure, Ctrl-C.

Bakes have their own lock (`<app>/<env>/<comp> bake`): a bake never changes what a
release, promotion or prune works on (its AMI is `building` until complete), so a
release need not wait for a half-hour bake, but two bakes of one comp never overlap.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from builder import process
from builder.aws import EnvAws
from builder.aws import locks as lock_items
from builder.config.models import Combo
from builder.errors import AwsError, LockedError
from builder.interrupts import Cancel
from builder.output import ProgressFn, silent

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

RELEASE = "release"
BAKE = "bake"
_POLL_S = 2.0


def owner_name() -> str:
    """Who holds a lock, for the person who finds it taken."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}:{os.getpid()}"


def key(combo: Combo, purpose: str = RELEASE) -> str:
    """The lock item's key: the combo for releases (as it always was), with a suffix
    for the others."""
    return str(combo) if purpose == RELEASE else f"{combo} {purpose}"


def _holder_gone(owner: str) -> bool:
    """Whether a lock's holder ran on this host and no longer exists (kill -9)."""
    host, _, pid = owner.partition("@")[2].rpartition(":")
    return process.on_this_host_and_gone(host, pid)


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


@contextmanager
def held(env_aws: EnvAws, combo: Combo, *, minutes: float, break_lock: bool = False,
         progress: ProgressFn = silent, purpose: str = RELEASE, wait_s: float = 0,
         cancel: Cancel | None = None, on_wait: Callable[[], None] | None = None
         ) -> Iterator[lock_items.LockItem]:
    """Hold the `purpose` lock of `combo` for the block (expiring after `minutes`),
    waiting up to `wait_s` for another holder to let go (`on_wait` hears that it did:
    what that holder made may change what this run has to do)."""
    dynamodb = env_aws.client("dynamodb")
    deadline = time.monotonic() + wait_s
    waiting = False
    while True:
        mine, other = _try(dynamodb, env_aws, combo, purpose, minutes, break_lock, progress)
        if other is None or break_lock:
            break
        if time.monotonic() >= deadline or _holder_gone(other.owner):
            gone = ("that process is gone (killed): --break-lock" if _holder_gone(other.owner)
                    else "if that run is gone, --break-lock"
                    + ("" if waiting else "; --lock-wait SECONDS to wait for it"))
            raise LockedError(f"{key(combo, purpose)}: locked by {other.owner} since "
                              f"{other.started_at} (expires {_utc(other.expires_at)}); {gone}")
        if not waiting:
            progress(str(combo), f"waiting up to {wait_s:g}s for the {purpose} lock held by "
                                 f"{other.owner} (since {other.started_at})")
            waiting = True
            if on_wait is not None:
                on_wait()
        if cancel is not None:
            cancel.event.wait(min(_POLL_S, max(deadline - time.monotonic(), 0)))
            cancel.raise_if_set()
        else:
            time.sleep(min(_POLL_S, max(deadline - time.monotonic(), 0)))
    if other is not None:
        progress(str(combo), f"broke the lock of {other.owner} (since {other.started_at})")
    try:
        yield mine
    finally:
        _release(dynamodb, mine, progress)


def _try(dynamodb: DynamoDBClient, env_aws: EnvAws, combo: Combo, purpose: str, minutes: float,
         force: bool, progress: ProgressFn) -> tuple[lock_items.LockItem,
                                                      lock_items.LockItem | None]:
    """One attempt: our lock item, and the live holder that kept (or, forced, lost) it."""
    now = time.time()
    mine = lock_items.LockItem(key(combo, purpose), owner_name(), uuid.uuid4().hex,
                               _utc(now), int(now + minutes * 60))
    try:
        other = lock_items.put(dynamodb, mine, now=int(now), force=force)
    except AwsError as exc:
        if exc.code != lock_items.TABLE_MISSING:
            raise
        progress(str(combo), f"making the DynamoDB table {lock_items.TABLE} for "
                             f"locks in {env_aws.account_id} {env_aws.region} (first use)")
        lock_items.create_table(dynamodb)
        other = lock_items.put(dynamodb, mine, now=int(now), force=force)
    if other is not None and other.expires_at < int(now):
        other = None  # --break-lock overwrote a lock that had expired: nobody's to break
    return mine, other


def _release(dynamodb: DynamoDBClient, mine: lock_items.LockItem, progress: ProgressFn) -> None:
    """Never hides the release's own outcome: a lock we can't delete expires anyway."""
    try:
        if not lock_items.delete(dynamodb, mine):
            progress(mine.key, "the lock was broken by someone else meanwhile; left theirs")
    except AwsError as exc:
        progress(mine.key, f"could not release the lock ({exc.message}); it expires at "
                           f"{_utc(mine.expires_at)}")
