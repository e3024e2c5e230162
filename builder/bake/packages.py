"""The package manifest of a bake (`packages.json` in the build's artifacts, its sha256
in the AMI's `builder:packages-sha256` tag) and what changed between two manifests.

Versions compare as Debian orders them (epoch, upstream version, revision; `~` sorts
before everything, even the end of the string), which also orders RPM's
`epoch:version-release` the way a reader expects for ordinary versions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import private

MANIFEST = "packages.json"


@dataclass(frozen=True, order=True)
class Package:
    """One installed package of an image."""

    name: str
    arch: str
    version: str
    source: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "arch": self.arch,
                "source": self.source}


def parse_list(text: str) -> list[Package]:
    """The finalize playbook's tab-separated lines (name, version, arch, source, status),
    installed packages only, sorted; a source left empty is the package's own name, an
    epoch rpm did not have ("(none):") is dropped."""
    found: set[Package] = set()
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) < 5 or not fields[0] or fields[4] != "installed":
            continue
        name, version, arch, source = fields[:4]
        version = version.removeprefix("(none):")
        found.add(Package(name, arch, version, source or name))
    return sorted(found)


def write_manifest(folder: Path, found: list[Package]) -> str:
    """Write `packages.json` (0600) and return its sha256."""
    text = json.dumps([p.to_json() for p in found], indent=1) + "\n"
    private.write_text(folder / MANIFEST, text)
    return hashlib.sha256(text.encode()).hexdigest()


def load_manifest(path: Path) -> list[Package]:
    """A `packages.json` as written by `write_manifest`."""
    return parse_manifest(path.read_text(encoding="utf-8"))


def parse_manifest(text: str | bytes) -> list[Package]:
    """The text of a `packages.json` (from a build folder or the records bucket)."""
    raw: list[dict[str, Any]] = json.loads(text)
    return [Package(str(p["name"]), str(p["arch"]), str(p["version"]), str(p["source"]))
            for p in raw]


# -- Debian version ordering (deb-version(7), dpkg's verrevcmp) -----------------------

def _order(char: str) -> int:
    if char.isdigit():
        return 0
    if char.isalpha():
        return ord(char)
    if char == "~":
        return -1
    return ord(char) + 256 if char else 0


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split(version: str) -> tuple[int, str, str]:
    epoch, colon, rest = version.partition(":")
    if not colon or not epoch.isdigit():
        epoch, rest = "0", version
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    return int(epoch), upstream, revision


def compare_versions(a: str, b: str) -> int:
    """<0, 0 or >0 as Debian version `a` sorts before, equal to or after `b`."""
    epoch_a, upstream_a, revision_a = _split(a)
    epoch_b, upstream_b, revision_b = _split(b)
    if epoch_a != epoch_b:
        return epoch_a - epoch_b
    return _compare_part(upstream_a, upstream_b) or _compare_part(revision_a, revision_b)


# -- what changed ----------------------------------------------------------------------

CHANGE_KINDS = ("added", "removed", "upgraded", "downgraded")

@dataclass(frozen=True)
class PackageChange:
    """One package that differs between two images (a version empty where it is absent)."""

    name: str
    arch: str
    change: str  # added | removed | upgraded | downgraded
    before: str
    after: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "arch": self.arch, "change": self.change,
                "before": self.before, "after": self.after}


def package_changes(before: list[Package], after: list[Package]) -> list[PackageChange]:
    """Packages added, removed, upgraded or downgraded from `before` to `after`, by
    (name, arch), sorted by name. Equal versions written differently ("1.0" and "0:1.0")
    are no change."""
    old = {(p.name, p.arch): p.version for p in before}
    new = {(p.name, p.arch): p.version for p in after}
    changes = []
    for key in sorted(old.keys() | new.keys()):
        was, now = old.get(key, ""), new.get(key, "")
        if not was:
            change = "added"
        elif not now:
            change = "removed"
        else:
            order = compare_versions(now, was)
            if order == 0:
                continue
            change = "upgraded" if order > 0 else "downgraded"
        changes.append(PackageChange(key[0], key[1], change, was, now))
    return changes


def count_changes(changes: list[PackageChange] | tuple[PackageChange, ...]) -> dict[str, int]:
    """Package changes per kind, every kind named (in CHANGE_KINDS order)."""
    return {kind: sum(1 for c in changes if c.change == kind) for kind in CHANGE_KINDS}
