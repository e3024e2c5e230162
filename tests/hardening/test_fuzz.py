"""Fuzzing the inputs a checkout or a command line controls: vars files, `-e` values,
names and templates. Whatever comes in, builder exits 0 or 2 with a message, never a
traceback, and within a time bound.

A fixed seed and a few dozen examples per test in the normal run;
`make fuzz` (BUILDER_FUZZ_EXAMPLES=2000) runs longer.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from builder.cli import app
from tests.conftest import copy_demo

EXAMPLES = int(os.environ.get("BUILDER_FUZZ_EXAMPLES", "25"))
SECONDS = 10.0  # per command, on a loaded CI machine
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

# Characters a file or an argument can hold (no lone surrogates; argv has no NUL).
TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")

YAML_PIECES = [
    "a: 1\n", "a: &x [1, 2]\n", "b: *x\n", "c: {<<: *x}\n",
    "base: &b {p: 1}\nweb: {<<: *b, p: 2}\n",
    "d: 2024-13-45\n", "n: " + "9" * 5000 + "\n", "deep: " + "[" * 200 + "]" * 200 + "\n",
    "x: &r [*r]\n", "components: [app, worker]\n", "components: 3\n", "aws_account_id: 12\n",
    "k: '{{ 1/0 }}'\n", "k: '{{ app }}-{{ nope }}'\n", "k: \"{{ ''.__class__ }}\"\n",
    "k: '{{ k }}'\n", "k: '{% for i in range(9999) %}{{ i }}{% endfor %}'\n", "\t- tab\n",
    "? [a]\n: 1\n", "1: int key\n", "a:\n  b:\n    c: 1\n", "--- \n...\n---\nz: 1\n",
    "\ufeffbom: 1\n",
    "ami_name: '{{ app }}'\n", "source_ami: ami-12345678\n", "playbook: ../../etc/passwd\n",
    "!!python/object:os.system 'id'\n", "k: !!binary aGk=\n", "k: .nan\n", "k: -.inf\n",
    "app: other\n", "ssh_source_cidrs: ['10.0.0.0/33']\n", "encrypt_boot: maybe\n",
]
TEMPLATE_PIECES = [
    "{{ app }}", "{{ nope }}", "{{ 1/0 }}", "{% include 'x' %}", "{% if %}", "{{ ''.__class__ }}",
    "{{ range(10**6)|list }}", "{% for i in range(3) %}{{ i }}{% endfor %}", "variable \"x\" {",
    "}", "\n", "{#", "{{ packer_version }}", "{% raw %}{{{% endraw %}", "{{ 'a' * 10**8 }}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "{% extends 'ubuntu.pkr.hcl' %}",
]


def _run(root: Path, *args: str) -> tuple[int, str, float]:
    runner = CliRunner()
    start = time.monotonic()
    result = runner.invoke(app, ["--root", str(root), *args], catch_exceptions=True)
    took = time.monotonic() - start
    output = result.output + (repr(result.exception) if result.exception and
                              not isinstance(result.exception, SystemExit) else "")
    return result.exit_code, output, took


def _check(code: int, output: str, took: float) -> None:
    assert code in (0, 2), output[-2000:]
    assert "Traceback" not in output and "internal error" not in output, output[-2000:]
    assert took < SECONDS, f"took {took:.1f} s"
    if code == 2:
        assert output.strip(), "exit 2 without a message"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield copy_demo(tmp_path_factory.mktemp("fuzz") / "infra")


@seed(20261201)
@FUZZ
@given(pieces=st.lists(st.one_of(st.sampled_from(YAML_PIECES), st.text(TEXT, max_size=40)),
                       max_size=8))
def test_vars_files(root: Path, pieces: list[str]) -> None:
    (root / "vars" / "demo" / "dev" / "app.yml").write_text("".join(pieces), encoding="utf-8")
    try:
        _check(*_run(root, "vars", "demo", "dev", "app", "--json"))
        _check(*_run(root, "validate", "demo", "--env", "dev", "--offline"))
    finally:
        (root / "vars" / "demo" / "dev" / "app.yml").unlink()


@seed(20261202)
@FUZZ
@given(key=st.text(TEXT, min_size=1, max_size=20).filter(lambda k: "=" not in k),
       value=st.one_of(st.text(TEXT, max_size=60),
                       st.sampled_from([piece.partition(": ")[2] for piece in YAML_PIECES])))
def test_extra_vars(root: Path, key: str, value: str) -> None:
    _check(*_run(root, "vars", "demo", "dev", "app", "-e", f"{key}={value}"))


@seed(20261203)
@FUZZ
@given(names=st.lists(st.one_of(st.text(TEXT, max_size=30), st.just("a" * 300),
                                st.sampled_from(["demo", "dev", "app", "..", "common", "-x"])),
                      min_size=3, max_size=3))
def test_names(root: Path, names: list[str]) -> None:
    if any(name.startswith("-") for name in names):
        names = ["--", *names]  # a name, not an option
    _check(*_run(root, "vars", *names))


@seed(20261204)
@FUZZ
@given(pieces=st.lists(st.one_of(st.sampled_from(TEMPLATE_PIECES), st.text(TEXT, max_size=30)),
                       max_size=8))
def test_templates(root: Path, pieces: list[str]) -> None:
    template = root / "packer" / "fuzz.pkr.hcl.j2"
    out = root / "out"
    template.write_text("".join(pieces), encoding="utf-8")
    try:
        _check(*_run(root, "render", "demo", "dev", "app", "-e", "packer_template=fuzz",
                     "--out", str(out)))
    finally:
        template.unlink()
        shutil.rmtree(out, ignore_errors=True)
