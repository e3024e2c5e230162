"""The emulator's patches are written against one moto release: the one pyproject pins."""

from __future__ import annotations

import tomllib
from pathlib import Path

import moto

from builder.local.emulator.patches import MOTO_VERSION, PATCHES

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_patches_are_for_the_moto_pyproject_pins_and_that_is_installed() -> None:
    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"][
        "optional-dependencies"]
    assert f"moto[server]=={MOTO_VERSION}" in extras["local"]
    assert moto.__version__ == MOTO_VERSION


def test_each_patch_replaces_one_thing_and_says_why() -> None:
    targets = [patch.key for patch in PATCHES]
    assert len(set(targets)) == len(targets)
    assert all(patch.why for patch in PATCHES)
