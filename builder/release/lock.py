"""One release per (app, env, comp) at a time, across machines and CI runners.

The lock is an item in the DynamoDB table `builder-locks` of the env's own account and
region (made on first use: on-demand billing, key `lock`), written with a conditional
put. It carries its owner (user@host:pid), start time and expiry; an expired lock is
taken over silently, a live one stops the second release with LockedError, and
`--break-lock` takes it anyway (for a holder that died before its expiry). The holder
removes it on every way out: success, failure, Ctrl-C.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from builder.aws import EnvAws
from builder.aws import locks as lock_items
from builder.config.models import Combo
from builder.errors import AwsError, LockedError
from builder.output import ProgressFn, silent

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def owner_name() -> str:
    """Who holds a lock, for the person who finds it taken."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}:{os.getpid()}"


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


@contextmanager
def held(env_aws: EnvAws, combo: Combo, *, minutes: float, break_lock: bool = False,
         progress: ProgressFn = silent) -> Iterator[lock_items.LockItem]:
    """Hold the release lock of `combo` for the block (expiring after `minutes`)."""
    dynamodb = env_aws.client("dynamodb")
    now = time.time()
    mine = lock_items.LockItem(str(combo), owner_name(), uuid.uuid4().hex, _utc(now),
                               int(now + minutes * 60))
    try:
        other = lock_items.put(dynamodb, mine, now=int(now), force=break_lock)
    except AwsError as exc:
        if exc.code != lock_items.TABLE_MISSING:
            raise
        progress(str(combo), f"making the DynamoDB table {lock_items.TABLE} for release "
                             f"locks in {env_aws.account_id} {env_aws.region} (first use)")
        lock_items.create_table(dynamodb)
        other = lock_items.put(dynamodb, mine, now=int(now), force=break_lock)
    if other is not None and other.expires_at < int(now):
        other = None  # --break-lock overwrote a lock that had expired: nobody's to break
    if other is not None and not break_lock:
        raise LockedError(f"{combo}: locked by {other.owner} since {other.started_at} "
                          f"(expires {_utc(other.expires_at)}); if that release is gone, "
                          "--break-lock")
    if other is not None:
        progress(str(combo), f"broke the lock of {other.owner} (since {other.started_at})")
    try:
        yield mine
    finally:
        _release(dynamodb, mine, progress)


def _release(dynamodb: DynamoDBClient, mine: lock_items.LockItem, progress: ProgressFn) -> None:
    """Never hides the release's own outcome: a lock we can't delete expires anyway."""
    try:
        if not lock_items.delete(dynamodb, mine):
            progress(mine.key, "the lock was broken by someone else meanwhile; left theirs")
    except AwsError as exc:
        progress(mine.key, f"could not release the lock ({exc.message}); it expires at "
                           f"{_utc(mine.expires_at)}")
