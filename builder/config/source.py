"""YAML loading that remembers the line of every key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from builder.errors import location

KeyPath = tuple[str, ...]


@dataclass(frozen=True)
class Origin:
    """Where a value came from: a file and line, or a named layer with no file."""

    layer: str
    file: Path | None = None
    line: int | None = None

    def show(self, root: Path | None = None) -> str:
        return self.layer if self.file is None else location(self.file, self.line, root)


@dataclass(frozen=True)
class LocatedDoc:
    """A YAML mapping with the origin of every key path (nested mapping keys included)."""

    values: dict[str, Any]
    origins: dict[KeyPath, Origin]


class YamlError(Exception):
    """A YAML document builder can't use, with the line to blame when known."""

    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.line = line


def load_mapping(text: str, file: Path) -> LocatedDoc:
    """Parse one YAML document that must be a mapping (an empty file is an empty one)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return LocatedDoc({}, {})
        if not isinstance(node, yaml.MappingNode):
            raise YamlError("must be a mapping of keys to values", node.start_mark.line + 1)
        origins: dict[KeyPath, Origin] = {}
        values = _mapping(loader, node, file, (), origins)
        return LocatedDoc(values, origins)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        raise YamlError(f"YAML: {message}", mark.line + 1 if mark else None) from exc
    finally:
        loader.dispose()


def _mapping(
    loader: yaml.SafeLoader,
    node: yaml.MappingNode,
    file: Path,
    prefix: KeyPath,
    origins: dict[KeyPath, Origin],
) -> dict[str, Any]:
    loader.flatten_mapping(node)
    result: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise YamlError(f"key {key!r} must be a string", line)
        if key in result:
            raise YamlError(f"duplicate key {'.'.join((*prefix, key))!r}", line)
        path = (*prefix, key)
        origins[path] = Origin(str(file), file, line)
        if isinstance(value_node, yaml.MappingNode):
            result[key] = _mapping(loader, value_node, file, path, origins)
        else:
            result[key] = loader.construct_object(value_node, deep=True)
    return result


def parse_scalar(text: str) -> Any:
    """A `-e key=value` value, read the way YAML reads a scalar (3 → int, true → bool)."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def merge(base: LocatedDoc, over: LocatedDoc) -> LocatedDoc:
    """Mappings merge key by key; anything else replaces (docs/architecture.md, "Vars
    layers and precedence")."""
    origins = dict(base.origins)
    for path in sorted(over.origins, key=len):
        merges_into = isinstance(_at(base.values, path), Mapping) and isinstance(
            _at(over.values, path), Mapping)
        if not merges_into:
            for stale in [p for p in origins if p[: len(path)] == path]:
                del origins[stale]
        origins[path] = over.origins[path]
    return LocatedDoc(_merge_values(base.values, over.values), origins)


def _merge_values(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = _merge_values(current, value)
        else:
            merged[key] = value
    return merged


def _at(values: Mapping[str, Any], path: KeyPath) -> Any:
    current: Any = values
    for key in path:
        if not isinstance(current, Mapping) or key not in current:
            return None
        current = current[key]
    return current
