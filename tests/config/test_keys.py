"""The key table is the one declaration: `Settings`, the defaults and `builder keys`
agree with it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from typing import Any, get_type_hints

from builder.config.keys import DEFAULTS, KEYS, REQUIRED
from builder.config.models import Settings


def test_table_and_settings_agree_on_names_order_and_types() -> None:
    assert [key.name for key in KEYS] == [field.name for field in fields(Settings)]
    hints = get_type_hints(Settings)
    for key in KEYS:
        assert get_type_hints(key.parse)["return"] == hints[key.name], key.name


def test_defaults_cover_every_key_but_the_required_ones() -> None:
    # aws_region is required unless aws_regions is set: a rule checks that (test_config).
    assert REQUIRED == ("components", "aws_account_id")
    assert set(DEFAULTS) | set(REQUIRED) == {key.name for key in KEYS}
    assert not set(DEFAULTS) & set(REQUIRED)
    assert DEFAULTS["ami_name"] == "{{ app }}-{{ env }}-{{ comp }}"


def test_every_key_has_a_one_line_doc() -> None:
    for key in KEYS:
        assert key.doc and "\n" not in key.doc and "|" not in key.doc, key.name


def test_keys_command_lists_the_table(cli: Callable[..., Any]) -> None:
    text = cli("keys")
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert lines[0].split() == ["key", "default", "meaning"]
    assert any(line.split()[:2] == ["ami_keep", "5"] for line in lines)
    assert any(line.split()[:2] == ["aws_account_id", "required"] for line in lines)

    listed = json.loads(cli("keys", "--json").output)
    assert [entry["name"] for entry in listed] == [key.name for key in KEYS]
    assert listed[0] == {"name": "components", "default": None, "required": True,
                         "doc": KEYS[0].doc}
