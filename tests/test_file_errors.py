"""A file or folder builder can't read or write: one line naming the path, exit 1 for
builder's own state (.builder/), exit 2 for anything else; never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builder.errors import FileSystemError


def test_a_state_folder_that_is_a_file(demo_root: Path, cli: Any) -> None:
    (demo_root / ".builder").write_text("not a folder")

    done = cli("render", "demo", "dev", "app", root=demo_root)

    assert done.exit_code == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("builder: ")
    assert ".builder" in lines[0] and "Not a directory" in lines[0]


def test_an_output_folder_outside_the_state_is_bad_input(demo_root: Path, cli: Any) -> None:
    blocked = demo_root / "out"
    blocked.write_text("a file where the output folder goes")

    done = cli("render", "demo", "dev", "app", "--out", str(blocked / "x"), root=demo_root)

    assert done.exit_code == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("builder: ") and last.endswith("out/x: Not a directory")


def test_the_error_names_both_paths_of_a_rename() -> None:
    error = FileSystemError.of(OSError(18, "Invalid cross-device link", "/a/.builder/x",
                                       None, "/b/y"))
    assert error.exit_code == 1
    assert error.format() == "/a/.builder/x: Invalid cross-device link (with /b/y)"
    assert FileSystemError.of(OSError("AF_UNIX path too long")).message == (
        "file system: AF_UNIX path too long")
