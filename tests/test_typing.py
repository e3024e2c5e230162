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


# Where the AWS layer may still say Any, and why: botocore's own untyped internals in the
# one place clients are made, and documents that are not AWS replies (a key policy's
# JSON, the Packer template's variables).
ANY_ALLOWED_IN_AWS = {
    ("session.py", "record"): "botocore's event model",
    ("session.py", "__init__"): "the cache of clients of every service",
    ("session.py", "client"): "the overloads above it give each service's type",
    ("session.py", "make_sts"): "botocore's client creator",
    ("sharing.py", "_statement_allows"): "a statement of a key policy's JSON",
    ("sharing.py", "_as_list"): "a value of a key policy's JSON",
    ("temporary.py", "vpc_for_build"): "the Packer template's variables",
    ("temporary.py", "_filters"): "a filter from the Packer template's variables",
}


def _any_annotations(tree: ast.Module) -> Iterator[str]:
    """The function (or "<module>") of every annotation that mentions Any."""

    def mentions_any(annotation: ast.expr | None) -> bool:
        return annotation is not None and any(
            isinstance(node, ast.Name) and node.id == "Any" for node in ast.walk(annotation))

    def visit(node: ast.AST, where: str) -> Iterator[str]:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs,
                     *([args.vararg] if args.vararg else []),
                     *([args.kwarg] if args.kwarg else [])]
            if mentions_any(node.returns) or any(mentions_any(a.annotation) for a in every):
                yield node.name
            where = node.name
        elif isinstance(node, ast.AnnAssign) and mentions_any(node.annotation):
            yield where
        for child in ast.iter_child_nodes(node):
            yield from visit(child, where)

    yield from visit(tree, "<module>")


def test_the_aws_layer_types_requests_and_replies() -> None:
    """No AWS request or reply is Any: each is the stubs' TypedDict, so mypy checks the
    keys builder reads and sends."""
    found = {(path.name, where) for path, tree in _trees()
             if path.parent.name == "aws" for where in _any_annotations(tree)}
    unexplained = sorted(found - ANY_ALLOWED_IN_AWS.keys())
    assert not unexplained, f"Any in builder/aws outside {ANY_ALLOWED_IN_AWS}: {unexplained}"
    assert not ANY_ALLOWED_IN_AWS.keys() - found, "stale entries in ANY_ALLOWED_IN_AWS"
