"""The generated docs (the README's key table, docs/cli.md) match the code."""

from __future__ import annotations

import shutil
from pathlib import Path

from builder import docs
from builder.config.keys import KEYS


def test_generated_docs_are_up_to_date() -> None:
    assert docs.stale() == [], "run `make docs` (python -m builder.docs)"


def test_check_names_an_outdated_readme(tmp_path: Path) -> None:
    shutil.copy(docs.REPO / "README.md", tmp_path / "README.md")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "cli.md").write_text(docs.cli_reference())
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("| ami_keep | `5` |", "| ami_keep | `3` |"))
    assert docs.stale(tmp_path) == [readme]


def test_readme_table_has_a_row_per_key() -> None:
    rows = docs.keys_table().splitlines()[2:]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == [key.name for key in KEYS]


def test_cli_reference_has_every_command() -> None:
    reference = docs.cli_reference()
    for path in docs.command_paths():
        assert f"## {' '.join(('builder', *path))}\n" in reference
    assert "## builder local fail-next-deployment\n" in reference


def test_docs_point_into_the_repository() -> None:
    # The design notes the code once cited live outside the repository; docs/ replaces them.
    outside = "DESIGN"
    sources = [docs.REPO / "README.md", *sorted((docs.REPO / "builder").rglob("*.py")),
               *sorted((docs.REPO / "docs").glob("*.md"))]
    citing = [str(path.relative_to(docs.REPO)) for path in sources
              if outside in path.read_text(encoding="utf-8")]
    assert not citing
    assert (docs.REPO / "docs" / "architecture.md").is_file()
