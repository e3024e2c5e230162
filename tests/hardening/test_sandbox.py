"""Templating is sandboxed and bounded: vars values, `-e` values and `.pkr.hcl.j2`
templates can't reach Python internals, and can't make a render run long or big."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_builder

# Walks from a string to os.popen: what a plain jinja2.Environment lets through.
ESCAPE = ("{{ ''.__class__.__mro__[1].__subclasses__() | selectattr('__name__', 'equalto', "
          "'Popen') | list }}")

PAYLOADS = [
    ("{{ ''.__class__.__mro__ }}", "__class__"),
    (ESCAPE, "__class__"),
    ("{{ cycler.__init__.__globals__ }}", "__init__"),
    ("{{ [1, 2].append(3) }}", "append"),
    ("{{ {'a': 1}.update({'b': 2}) }}", "update"),
    ("{{ range(100000) | list }}", "range of 100,000 items"),
    ("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
     "loops ran over 1,000,000 items"),
    ("{{ 'a' * 1000000000 }}", "over 1,000,000"),
    ("{{ 2 ** 100000 }}", "too large"),
    ("{{ '%999999999d' % 1 }}", "format width"),
    ("{{ '{:>999999999}'.format(1) }}", "format width"),
    ("{{ 'a' | center(999999999) }}", "filter center"),
]


@pytest.mark.parametrize(("payload", "says"), PAYLOADS)
def test_vars_value_payloads_are_exit_2_at_file_line_and_key(
        demo_root: Path, payload: str, says: str) -> None:
    (demo_root / "vars" / "demo" / "dev" / "app.yml").write_text(
        f"# a comment\nmotd: {payload!r}\n")
    start = time.monotonic()
    done = run_builder("vars", "demo", "dev", "app", root=demo_root, timeout=60)
    assert time.monotonic() - start < 30
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    line = done.stderr.strip()
    assert line.startswith("builder: ") and "vars/demo/dev/app.yml:2: motd: Jinja" in line, line
    assert says in line
    assert len(line.splitlines()) == 1


def test_a_builder_key_cannot_reach_what_the_sandbox_removed(demo_root: Path) -> None:
    """lipsum is gone from the sandbox. Builder's own keys render strictly, so the name is
    undefined there (other vars pass a name builder doesn't know on to Ansible)."""
    (demo_root / "vars" / "demo" / "dev" / "app.yml").write_text(
        "# a comment\nami_name: '{{ lipsum(100000) }}'\n")
    done = run_builder("vars", "demo", "dev", "app", root=demo_root, timeout=60)
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert "vars/demo/dev/app.yml:2: ami_name: Jinja" in line, line
    assert "'lipsum' is undefined" in line


@pytest.mark.parametrize(("payload", "says"), PAYLOADS[:4])
def test_e_value_payloads_name_the_option(demo_root: Path, payload: str, says: str) -> None:
    done = run_builder("validate", "demo", "--offline", "-e", f"motd={payload}", root=demo_root)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    assert "-e motd: Jinja sandbox:" in done.stdout and says in done.stdout


def test_sandboxed_values_still_do_what_ansible_values_do(demo_root: Path, cli: Any) -> None:
    (demo_root / "vars" / "demo" / "dev" / "app.yml").write_text(
        "ports: '{{ range(3) | list }}'\nname: '{{ \"%s-%s\" % (app, env) }}'\n"
        "upper: '{{ comp | upper }}-{{ \"{}\".format(1) }}'\n")
    result = cli("vars", "demo", "dev", "app", "--json", root=demo_root)
    assert result.exit_code == 0, result.output
    assert '"ports": [\n      0,\n      1,\n      2\n    ]' in result.stdout
    assert '"name": "demo-dev"' in result.stdout
    assert '"upper": "APP-1"' in result.stdout


TEMPLATE_CASES: list[tuple[str, str, int | None]] = [
    ("# ok\n{{ ''.__class__ }}\n", "Jinja sandbox: access to attribute '__class__'", 2),
    ("# ok\n\n{{ 1/0 }}\n", "Jinja: ZeroDivisionError: division by zero", 3),
    ("{% include 'missing.hcl' %}\n", "Jinja: template 'missing.hcl' not found", 1),
    ("{% include '../../etc/passwd' %}\n", "Jinja: template '../../etc/passwd' not found", 1),
    ("{{ range(10**6) | list }}\n", "Jinja sandbox: range of 1,000,000 items", 1),
]


@pytest.mark.parametrize(("text", "says", "line"), TEMPLATE_CASES)
def test_template_payloads_are_exit_2_at_the_template_line(
        demo_root: Path, text: str, says: str, line: int | None) -> None:
    (demo_root / "packer" / "custom.pkr.hcl.j2").write_text(text)
    done = run_builder("render", "demo", "dev", "app", "-e", "packer_template=custom",
                       root=demo_root, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"packer/custom.pkr.hcl.j2:{line}: {says}" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_binary_template_is_exit_2(demo_root: Path) -> None:
    (demo_root / "packer" / "custom.pkr.hcl.j2").write_bytes(b"\xff\xfe\x00binary")
    done = run_builder("render", "demo", "dev", "app", "-e", "packer_template=custom",
                       root=demo_root)
    assert done.returncode == 2
    assert "packer/custom.pkr.hcl.j2: not UTF-8 text" in done.stderr
