"""AWS clients are typed: no client held as `Any` (mypy then checks every AWS call), and
the boto3 stubs that give the types are for mypy only, never imported when builder runs."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "builder"
# Names builder gives the clients it is handed (EnvAws.client's services, and `client`).
CLIENT_NAMES = {"ec2", "autoscaling", "codedeploy", "sts", "ssm", "kms", "s3", "dynamodb",
                "client"}


def _trees() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def _is_any(annotation: ast.expr | None) -> bool:
    return (isinstance(annotation, ast.Name) and annotation.id == "Any") or (
        isinstance(annotation, ast.Constant) and annotation.value == "Any")


def _client_annotations(tree: ast.Module) -> Iterator[tuple[str, int, ast.expr | None]]:
    """(name, line, annotation) of every parameter and annotated attribute or variable
    named like a client."""
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.arg in CLIENT_NAMES:
            yield node.arg, node.lineno, node.annotation
        elif isinstance(node, ast.AnnAssign):
            target = node.target
            name = (target.id if isinstance(target, ast.Name) else
                    target.attr if isinstance(target, ast.Attribute) else "")
            if name in CLIENT_NAMES:
                yield name, node.lineno, node.annotation


def test_no_client_is_typed_any() -> None:
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{line}: {name}: Any"
                 for path, tree in _trees()
                 for name, line, annotation in _client_annotations(tree) if _is_any(annotation)]
    assert not offenders, ("clients typed Any (use the mypy_boto3_* client type):\n"
                           + "\n".join(offenders))


def test_the_stubs_are_imported_for_mypy_only() -> None:
    def runtime_imports(node: ast.AST) -> Iterator[tuple[int, str]]:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and (
                node.test.id == "TYPE_CHECKING"):
            for child in node.orelse:
                yield from runtime_imports(child)
            return
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or ""
        for child in ast.iter_child_nodes(node):
            yield from runtime_imports(child)

    offenders = [f"{path.relative_to(PACKAGE.parent)}:{line}: {module}"
                 for path, tree in _trees() for line, module in runtime_imports(tree)
                 if module.startswith("mypy_boto3_")]
    assert not offenders, ("stubs imported outside `if TYPE_CHECKING:` (they would load on "
                           "every run):\n" + "\n".join(offenders))
