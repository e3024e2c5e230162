"""`builder status --html FILE`: the lineage page, rendered by headless Chromium (a
screenshot that isn't blank, a DOM with every combo's row and the links between rows),
and tag values that try to inject markup shown as text."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from builder.aws import images
from builder.bake.packages import Package, write_manifest
from builder.config.models import Combo
from builder.pipelines.promote import promote
from builder.project import Project
from builder.records import build_folder
from builder.release.release import release
from tests.pipelines.conftest import bake_like, ec2_of

pytestmark = pytest.mark.local

WINDOW = (1600, 1000)


def with_packages(project: Project, combo: Combo, image: images.Image, count: int) -> None:
    """A packages.json of `count` packages in the image's build folder, and its tag."""
    folder = build_folder(project, image)
    assert folder is not None
    digest = write_manifest(folder, [Package(f"pkg{i}", "amd64", "1.0", f"pkg{i}")
                                     for i in range(count)])
    images.set_tags(ec2_of(project, combo), image, {images.TAG_PACKAGES_SHA256: digest})


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    program = shutil.which("chromium")
    assert program, "chromium is missing: `make system-deps` installs it"
    return subprocess.run([program, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and the rows of an 8-bit RGB or RGBA PNG (filters undone)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, b"", b""
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    step = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * step
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - step] if x >= step else 0
            up = previous[x]
            corner = previous[x - step] if x >= step else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                near = min((abs(guess - left), 0), (abs(guess - up), 1),
                           (abs(guess - corner), 2))[1]
                line[x] = (line[x] + (left, up, corner)[near]) & 0xFF
        rows.append(bytes(line if step == 3 else
                          b"".join(line[i:i + 3] for i in range(0, stride, 4))))
        previous = line
    return width, height, rows


class Dom(HTMLParser):
    """Row ids, link targets and element names of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.row_ids: set[str] = set()
        self.links: dict[str, list[str]] = {}  # row id → hrefs in that row
        self.tags: set[str] = set()
        self._row = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        found = dict(attrs)
        if tag == "tr" and found.get("id"):
            self._row = found["id"] or ""
            self.row_ids.add(self._row)
        if tag == "a" and self._row:
            self.links.setdefault(self._row, []).append(found.get("href") or "")


def test_the_lineage_page_renders_every_combo_with_links(local_stack: Project, cli: Any,
                                                         tmp_path: Path) -> None:
    staging = Combo("demo", "staging", "worker")
    baked = bake_like(local_stack, staging)
    with_packages(local_stack, staging, baked, 312)
    release(local_stack, staging, ami_id=baked.id)
    copy = promote(local_stack, "demo", "worker", "prod").ami_id

    page = tmp_path / "status.html"
    done = cli("--local", "status", "--html", str(page), root=local_stack.root)
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"wrote {page}: ")
    combos = json.loads(cli("--local", "status", "--json", root=local_stack.root).stdout)["combos"]
    text = page.read_text(encoding="utf-8")
    # Self-contained: nothing the browser would fetch.
    assert "http" not in text.replace(f"file://{page}", "") and "<script" not in text

    shot = tmp_path / "status.png"
    drawn = chromium(f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                     page.as_uri())
    assert shot.is_file(), drawn.stderr
    width, height, rows = png_pixels(shot)
    assert (width, height) == WINDOW
    background = rows[0][:3]
    inked = sum(1 for row in rows for x in range(0, len(row), 3) if row[x:x + 3] != background)
    assert inked > width * height // 50, f"only {inked} pixels differ from the background"

    dumped = chromium("--dump-dom", page.as_uri())
    assert dumped.returncode == 0, dumped.stderr
    dom = Dom()
    dom.feed(dumped.stdout)
    wanted = {f"{c['app']}.{c['env']}.{c['comp']}" for c in combos}
    assert len(wanted) == len(combos) >= 6 and wanted <= dom.row_ids
    # The copy links to its source's row, the source to its copy's.
    assert "#demo.staging.worker" in dom.links["demo.prod.worker"]
    assert "#demo.prod.worker" in dom.links["demo.staging.worker"]
    for row_id, hrefs in dom.links.items():
        assert all(h[1:] in dom.row_ids for h in hrefs), (row_id, hrefs)
    assert baked.id in dumped.stdout and copy in dumped.stdout
    assert ">312<" in dumped.stdout  # the source's packages; the copy shares its manifest
    assert dumped.stdout.count(">312<") == 2
    assert '<tr id="demo.dev.app" class="due">' in dumped.stdout  # no AMI yet: a bake due


def test_tag_values_are_shown_as_text(local_stack: Project, cli: Any, tmp_path: Path) -> None:
    dev = Combo("demo", "dev", "worker")
    image = bake_like(local_stack, dev)
    release(local_stack, dev, ami_id=image.id)
    hostile = {images.TAG_SOURCE_AMI_NAME: "<script>alert(1)</script>",
               images.TAG_STATUS: '"><img src=x onerror=alert(2)>',
               images.TAG_PROMOTED_FROM: "<b>e/ami-<script>alert(3)"}
    images.set_tags(ec2_of(local_stack, dev), image, hostile)

    page = tmp_path / "status.html"
    done = cli("--local", "status", "demo", "--html", str(page), root=local_stack.root)
    assert done.exit_code == 0, done.output
    text = page.read_text(encoding="utf-8")
    dom = Dom()
    dom.feed(text)
    assert not dom.tags & {"script", "img", "b"}
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in text
    assert "copy of &lt;b&gt;e: ami-&lt;script&gt;alert(3)" in text


def test_a_page_nowhere_to_go_is_refused_before_reading_aws(local_stack: Project, cli: Any,
                                                            tmp_path: Path) -> None:
    nowhere = tmp_path / "missing" / "status.html"
    done = cli("--local", "status", "--html", str(nowhere), root=local_stack.root)
    assert done.exit_code == 2 and f"no folder {nowhere.parent}" in done.output
    done = cli("--local", "status", "--html", str(tmp_path), root=local_stack.root)
    assert done.exit_code == 2 and "is a folder" in done.output
