"""Local build hosts kept for debugging, by their registry entries: `reap` tears one
down after its time (or for its run) and leaves one in its time, though its bake is
gone; `local down` stops them all and says which were kept."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from builder.config.layout import Layout
from builder.local import buildhost, stack

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _host(root: Path, name: str, **entry: object) -> Path:
    """A build host's folder as a bake leaves it (nothing mounted: only its entry)."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    home = root / ".builder" / "local" / "buildhosts" / name
    home.mkdir(parents=True)
    (home / "host.json").write_text(json.dumps({"owner_pid": gone.pid, **entry}))
    return home


def _kept(root: Path, name: str, until: datetime) -> Path:
    return _host(root, name, kept_for_debug=name, kept_until=until.isoformat())


def test_reap_leaves_a_kept_host_in_its_time(tmp_path: Path) -> None:
    expired = _kept(tmp_path, "aaaaaaaaaaaa", NOW - timedelta(seconds=1))
    current = _kept(tmp_path, "bbbbbbbbbbbb", NOW + timedelta(hours=1))
    orphan = _host(tmp_path, "orphan")
    layout = Layout(tmp_path)
    assert buildhost.stop_orphans(layout, now=NOW, dry_run=True) == ["aaaaaaaaaaaa", "orphan"]
    assert buildhost.stop_orphans(layout, now=NOW) == ["aaaaaaaaaaaa", "orphan"]
    assert not expired.exists() and not orphan.exists() and current.exists()
    assert buildhost.stop_orphans(layout, now=NOW, release_run="bbbbbbbbbbbb") == [
        "bbbbbbbbbbbb"]
    assert not current.exists()


def test_local_down_stops_kept_hosts_and_says_so(tmp_path: Path) -> None:
    _kept(tmp_path, "cccccccccccc", NOW + timedelta(hours=1))
    _host(tmp_path, "other")
    stopped = stack.down(Layout(tmp_path))
    assert (stopped.build_hosts_stopped, stopped.kept_hosts_stopped) == (2, ("cccccccccccc",))
    assert "kept for debugging, now stopped: cccccccccccc" in stopped.to_text()
    assert "builder reap" in stopped.to_text()
    assert buildhost.kept_hosts(Layout(tmp_path)) == []
