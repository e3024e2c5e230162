"""Every module of builder says what it is for, and so does every public top-level
function and class (methods may rely on their class's docstring)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "builder"


def _missing(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    where = path.relative_to(PACKAGE.parent)
    missing = [f"{where}: module"] if not ast.get_docstring(tree) else []
    for node in tree.body:
        if (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and not node.name.startswith("_") and not ast.get_docstring(node)):
            missing.append(f"{where}:{node.lineno}: {node.name}")
    return missing


def test_every_module_and_public_definition_has_a_docstring() -> None:
    missing = [entry for path in sorted(PACKAGE.rglob("*.py")) for entry in _missing(path)]
    assert not missing, "no docstring:\n" + "\n".join(missing)
