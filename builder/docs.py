"""Generated documentation: the README's key table (from `builder.config.keys.KEYS`) and
`docs/cli.md` (from the `--help` of every command).

    python -m builder.docs           # rewrite both (`make docs`)
    python -m builder.docs --check   # exit 1 naming what is out of date (a test runs it)

It works on a checkout: the files it writes are the repository's, not the package's.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KEYS_START, KEYS_END = "<!-- keys:start -->", "<!-- keys:end -->"
# The help as an 80-column terminal shows it (click leaves two columns free).
HELP_WIDTH = 78


def keys_table() -> str:
    """The README's table of the builder keys, in Markdown."""
    from builder.config.keys import KEYS

    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key in KEYS:
        shown = key.shown_default()
        default = shown if key.required or key.default is None else f"`{shown}`"
        lines.append(f"| {key.name} | {default} | {key.doc} |")
    return "\n".join(lines)


def command_paths() -> Iterator[tuple[str, ...]]:
    """Every command and group of the CLI, as its words after `builder`, parents first."""
    import typer.main

    from builder.cli import app

    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        for name in getattr(command, "commands", {}):
            yield from walk(command.commands[name], (*path, name))

    yield from walk(typer.main.get_command(app), ())


@functools.cache
def help_text(path: tuple[str, ...]) -> str:
    """`builder PATH --help` as an 80-column terminal shows it."""
    from typer.testing import CliRunner

    from builder.cli import app

    result = CliRunner().invoke(app, [*path, "--help"], prog_name="builder",
                                terminal_width=HELP_WIDTH)
    if result.exit_code != 0:
        raise RuntimeError(f"builder {' '.join(path)} --help failed: {result.output}")
    return result.output


def cli_reference() -> str:
    """`docs/cli.md`: the help of every command, in the order the CLI lists them."""
    parts = ["# Command-line reference", "",
             "Generated from `builder ... --help` by `python -m builder.docs` (`make docs`);",
             "a test fails when this file is out of date. The README explains the commands",
             "and docs/architecture.md how they work.", ""]
    for path in command_paths():
        parts += [f"## {' '.join(('builder', *path))}", "", "```text",
                  help_text(path).rstrip(), "```", ""]
    return "\n".join(parts)


def with_keys_table(readme: str) -> str:
    """The README text with the table between the key markers regenerated."""
    pattern = re.compile(f"{re.escape(KEYS_START)}\n.*?{re.escape(KEYS_END)}", re.DOTALL)
    if not pattern.search(readme):
        raise RuntimeError(f"README.md has no {KEYS_START} ... {KEYS_END} markers")
    return pattern.sub(lambda _: f"{KEYS_START}\n{keys_table()}\n{KEYS_END}", readme)


def generated(root: Path = REPO) -> dict[Path, str]:
    """Every generated file under `root` with the text it should have."""
    readme = root / "README.md"
    return {readme: with_keys_table(readme.read_text(encoding="utf-8")),
            root / "docs" / "cli.md": cli_reference()}


def stale(root: Path = REPO) -> list[Path]:
    """The generated files whose text differs from what they should have."""
    return [path for path, text in generated(root).items()
            if not path.is_file() or path.read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    """Rewrite the generated docs, or with --check only name the stale ones (exit 1)."""
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--check"]):
        sys.stderr.write("usage: python -m builder.docs [--check]\n")
        return 2
    if args:
        outdated = stale()
        for path in outdated:
            sys.stderr.write(f"{path.relative_to(REPO)} is out of date: run make docs\n")
        return 1 if outdated else 0
    for path, text in generated().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
