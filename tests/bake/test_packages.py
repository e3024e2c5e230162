"""The package manifest and Debian version ordering, without a bake."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.bake.packages import (
    Package,
    compare_versions,
    load_manifest,
    package_changes,
    parse_list,
    write_manifest,
)

# (lower, higher) pairs as dpkg orders them.
ORDERED = [
    ("1.0", "1.1"), ("1.0~rc1", "1.0"), ("1.0~~", "1.0~"), ("1.0", "1.0a"),
    ("1.0", "1.0.1"), ("1.9", "1.10"), ("1.0-1", "1.0-2"), ("1.0-9", "1.0-10"),
    ("2.0", "1:0.1"), ("1:1.0", "2:0.1"), ("1.0-1ubuntu1", "1.0-1ubuntu1.1"),
    ("3.0.2-0ubuntu1.10", "3.0.2-0ubuntu1.12"), ("1.0+b1", "1.0.1"), ("1.0", "1.0+b1"),
    ("9.2p1-2", "9.2p1-2+deb12u1"), ("a", "b"), ("1.0a", "1.0+"), ("1.0-1~bpo1", "1.0-1"),
]


@pytest.mark.parametrize(("lower", "higher"), ORDERED)
def test_debian_version_order(lower: str, higher: str) -> None:
    assert compare_versions(lower, higher) < 0
    assert compare_versions(higher, lower) > 0
    assert compare_versions(lower, lower) == 0


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is not installed")
@pytest.mark.parametrize(("lower", "higher"), ORDERED)
def test_dpkg_agrees(lower: str, higher: str) -> None:
    done = subprocess.run(["dpkg", "--compare-versions", lower, "lt", higher], check=False)
    assert done.returncode == 0


def test_equal_versions_written_differently() -> None:
    assert compare_versions("0:1.0", "1.0") == 0
    assert compare_versions("1.00", "1.0") == 0


def test_parse_keeps_installed_packages_sorted() -> None:
    listed = ("zlib1g\t1:1.2.13\tamd64\tzlib\tinstalled\n"
              "bash\t5.2-2\tamd64\t\tinstalled\n"
              "oldpkg\t1.0\tamd64\toldpkg\tconfig-files\n"
              "rpmpkg\t(none):1.0-1\tx86_64\trpmpkg-1.0-1.src.rpm\tinstalled\n"
              "garbage line\n")
    assert parse_list(listed) == [
        Package("bash", "amd64", "5.2-2", "bash"),
        Package("rpmpkg", "x86_64", "1.0-1", "rpmpkg-1.0-1.src.rpm"),
        Package("zlib1g", "amd64", "1:1.2.13", "zlib"),
    ]


def test_manifest_round_trip_and_sha(tmp_path: Path) -> None:
    found = [Package("bash", "amd64", "5.2-2", "bash")]
    digest = write_manifest(tmp_path, found)
    path = tmp_path / "packages.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text()) == [
        {"name": "bash", "version": "5.2-2", "arch": "amd64", "source": "bash"}]
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_manifest(path) == found


def test_package_changes() -> None:
    before = [Package("a", "amd64", "1.0", "a"), Package("b", "amd64", "2.0", "b"),
              Package("c", "amd64", "1.0~rc1", "c"), Package("d", "all", "0:1", "d"),
              Package("e", "amd64", "1.10", "e")]
    after = [Package("b", "amd64", "1.9", "b"), Package("c", "amd64", "1.0", "c"),
             Package("d", "all", "1", "d"), Package("e", "amd64", "1.10", "e"),
             Package("tree", "amd64", "2.1.0-1", "tree")]
    changes = [(c.name, c.change, c.before, c.after) for c in package_changes(before, after)]
    assert changes == [("a", "removed", "1.0", ""), ("b", "downgraded", "2.0", "1.9"),
                       ("c", "upgraded", "1.0~rc1", "1.0"), ("tree", "added", "", "2.1.0-1")]
