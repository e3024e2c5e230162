"""The release lock in DynamoDB (in the env's own account): made on first use, one
holder at a time, expiry, --break-lock, --lock-wait, the bake lock beside it, and always
released by its holder."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from builder.aws import EnvAws
from builder.aws import locks as lock_items
from builder.config.models import Combo
from builder.errors import LockedError
from builder.project import Project
from builder.release.lock import BAKE, held, owner_name
from tests.release.emulated import Lines

pytestmark = pytest.mark.local

COMBO = Combo("demo", "dev", "app")


@pytest.fixture(scope="module")
def dev(local_stack: Project) -> EnvAws:
    return local_stack.env_aws(local_stack.resolve("demo", "dev", "app"))


def stored(dev: EnvAws, combo: Combo = COMBO) -> lock_items.LockItem | None:
    item = dev.client("dynamodb").get_item(TableName=lock_items.TABLE, ConsistentRead=True,
                                           Key={lock_items.KEY: {"S": str(combo)}}).get("Item")
    return lock_items.LockItem.from_item(item) if item else None


def test_the_first_lock_makes_the_table_in_the_envs_account(dev: EnvAws) -> None:
    dynamodb = dev.client("dynamodb")
    if lock_items.TABLE in dynamodb.list_tables()["TableNames"]:  # another test made it
        dynamodb.delete_table(TableName=lock_items.TABLE)
    progress = Lines()
    with held(dev, COMBO, minutes=5, progress=progress) as mine:
        assert stored(dev) == mine
        assert mine.owner == owner_name() and "@" in mine.owner
        assert mine.expires_at - time.time() == pytest.approx(300, abs=5)
    assert stored(dev) is None
    assert any("making the DynamoDB table builder-locks" in line for line in progress.lines)
    table = dynamodb.describe_table(TableName=lock_items.TABLE)["Table"]
    assert table["TableArn"].split(":")[4] == "111111111111"


def test_a_second_holder_is_told_who_has_it(dev: EnvAws) -> None:
    with held(dev, COMBO, minutes=5) as mine:
        with pytest.raises(LockedError) as locked, held(dev, COMBO, minutes=5):
            pass
        assert stored(dev) == mine  # the loser leaves the holder's lock alone
    assert locked.value.message.startswith(
        f"demo/dev/app: locked by {mine.owner} since {mine.started_at} (expires ")
    assert "--break-lock" in locked.value.message
    # Other combos have their own locks.
    with held(dev, COMBO, minutes=5), held(dev, Combo("demo", "dev", "worker"), minutes=5):
        pass


def plant_expired_lock(dev: EnvAws) -> None:
    """A lock whose holder is long gone (its expiry has passed)."""
    stale = lock_items.LockItem(str(COMBO), "ci@runner-7:4242", "old-token",
                                "2020-01-01T00:00:00+00:00", int(time.time()) - 1)
    dynamodb = dev.client("dynamodb")
    lock_items.create_table(dynamodb)  # (already there unless this test runs alone)
    assert lock_items.put(dynamodb, stale, now=0) is None


def test_an_expired_lock_is_taken_over(dev: EnvAws) -> None:
    plant_expired_lock(dev)
    with held(dev, COMBO, minutes=5) as mine:
        assert stored(dev) == mine
    assert stored(dev) is None


def test_break_lock_over_an_expired_lock_breaks_nobodys(dev: EnvAws) -> None:
    plant_expired_lock(dev)
    progress = Lines()
    with held(dev, COMBO, minutes=5, break_lock=True, progress=progress) as mine:
        assert stored(dev) == mine
    assert progress.lines == []


def test_break_lock_takes_a_live_lock(dev: EnvAws) -> None:
    progress = Lines()
    with held(dev, COMBO, minutes=5) as first, \
            held(dev, COMBO, minutes=5, break_lock=True, progress=progress) as second:
        assert stored(dev) == second
        assert progress.lines == [f"demo/dev/app: broke the lock of {first.owner} "
                                  f"(since {first.started_at})"]
    assert stored(dev) is None


def test_a_holder_whose_lock_was_broken_leaves_the_new_one(dev: EnvAws) -> None:
    progress = Lines()
    dynamodb = dev.client("dynamodb")
    with held(dev, COMBO, minutes=5, progress=progress) as first:
        theirs = lock_items.LockItem(str(COMBO), "someone@else:1", "their-token",
                                     first.started_at, int(time.time()) + 300)
        assert lock_items.put(dynamodb, theirs, now=0, force=True) == first
    assert stored(dev) == theirs
    assert "broken by someone else" in progress.lines[-1]
    assert lock_items.delete(dynamodb, theirs)


def test_the_lock_is_released_when_the_block_fails(dev: EnvAws) -> None:
    with pytest.raises(RuntimeError), held(dev, COMBO, minutes=5):
        raise RuntimeError("the release failed")
    assert stored(dev) is None


def test_a_second_holder_waits_for_the_first(dev: EnvAws) -> None:
    """--lock-wait: the second run takes the lock the moment the first lets go."""
    waiting, done = threading.Event(), threading.Event()
    second: list[lock_items.LockItem] = []

    def wait_for_it() -> None:
        with held(dev, COMBO, minutes=5, wait_s=60, on_wait=waiting.set) as mine:
            second.append(mine)
        done.set()

    with held(dev, COMBO, minutes=5):
        thread = threading.Thread(target=wait_for_it)
        thread.start()
        assert waiting.wait(30)  # it found the lock taken and waits
        assert not second
    thread.join(30)
    assert done.is_set() and second and stored(dev) is None


def test_a_wait_that_runs_out_names_the_holder(dev: EnvAws) -> None:
    with held(dev, COMBO, minutes=5) as first, pytest.raises(LockedError) as locked, \
            held(dev, COMBO, minutes=5, wait_s=0.5):
        pass
    assert locked.value.message.startswith(f"demo/dev/app: locked by {first.owner}")
    assert "--lock-wait" not in locked.value.message  # it waited already


def test_bakes_have_a_lock_of_their_own(dev: EnvAws) -> None:
    """A release never waits for a bake; two bakes of one comp do."""
    with held(dev, COMBO, minutes=5), held(dev, COMBO, minutes=5, purpose=BAKE) as bake:
        assert bake.key == "demo/dev/app bake"
        with pytest.raises(LockedError, match=r"^demo/dev/app bake: locked by .* --lock-wait"), \
                held(dev, COMBO, minutes=5, purpose=BAKE):
            pass


def test_a_killed_holder_on_this_host_is_named(dev: EnvAws) -> None:
    gone = lock_items.LockItem(str(COMBO), f"ci@{socket.gethostname()}:{2**22 + 1}", "token",
                               "2026-01-01T00:00:00+00:00", int(time.time()) + 300)
    dynamodb = dev.client("dynamodb")
    assert lock_items.put(dynamodb, gone, now=int(time.time())) is None
    # No waiting for a holder that is gone.
    with pytest.raises(LockedError, match="that process is gone \\(killed\\): --break-lock"), \
            held(dev, COMBO, minutes=5, wait_s=30):
        pass
    assert lock_items.delete(dynamodb, gone)
