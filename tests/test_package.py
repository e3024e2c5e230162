"""The package's shape: every module imports on its own, no import cycles (deferred
imports included), the core never imports local mode, one module owns each dependency."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "builder"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path) -> set[str]:
    """Every builder module `path` imports, at the top or inside functions; imports
    under `if TYPE_CHECKING:` never run and are left out."""
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else \
        _module_name(path).rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1],
                                 *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in found if name in MODULES}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _cycle_from(start: str) -> list[str] | None:
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, trail = stack.pop()
        for target in GRAPH[node]:
            if target == start:
                return [*trail, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*trail, target]))
    return None


def test_no_import_cycles() -> None:
    cycles = {" -> ".join(cycle) for name in GRAPH if (cycle := _cycle_from(name))}
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))


def test_every_module_imports_on_its_own() -> None:
    def load(module: str) -> tuple[str, str]:
        done = subprocess.run([sys.executable, "-c", f"import {module}"],
                              capture_output=True, text=True, check=False, timeout=120)
        return module, (done.stderr.strip() or f"exit {done.returncode}").splitlines()[-1] \
            if done.returncode else ""

    importable = [name for name in MODULES if not name.endswith("__main__")]  # runs the CLI
    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f"{module}: {error}" for module, error in pool.map(load, importable) if error]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("rule", [
    # (who may import it, the module or package)
    ({"builder.cli", "builder.local"}, "builder.local"),
    ({"builder.aws"}, "boto3"),
    ({"builder.aws"}, "botocore"),
    ({"builder.provision.ansible"}, "ansible_runner"),
    ({"builder.local"}, "moto"),
])
def test_one_owner_per_dependency(rule: tuple[set[str], str]) -> None:
    owners, target = rule

    def imports_target(path: Path) -> bool:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name == target or name.startswith(target + ".") for name in names):
                return True
        return False

    offenders = [name for name, path in MODULES.items()
                 if not any(name == owner or name.startswith(owner + ".") for owner in owners)
                 and imports_target(path)]
    assert not offenders, f"{target} imported outside {sorted(owners)}: {offenders}"
