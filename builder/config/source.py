"""YAML loading that remembers the line of every key."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from builder.errors import location

KeyPath = tuple[str, ...]


@dataclass(frozen=True)
class Origin:
    """Where a value came from: a file and line, or a named layer with no file."""

    layer: str
    file: Path | None = None
    line: int | None = None
    outside_root: Path | None = None  # where `file`, a symlink, leads out of the root

    def show(self, root: Path | None = None) -> str:
        if self.file is None:
            return self.layer
        shown = location(self.file, self.line, root)
        return f"{shown} (outside the root: {self.outside_root})" if self.outside_root else shown


@dataclass(frozen=True)
class LocatedDoc:
    """A YAML mapping with the origin of every key path (nested mapping keys included)."""

    values: dict[str, Any]
    origins: dict[KeyPath, Origin]


# Resource limits on every YAML builder reads (vars files, -e values): a vars file is
# a page of settings, so these are far above real use and far below a hang.
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_VALUES = 1_000_000  # values after expanding every alias (a "billion laughs" has 10^9)

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlError(Exception):
    """A YAML document builder can't use, with the line to blame when known."""

    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class VaultValue:
    """An inline `!vault` value: kept encrypted, passed to Ansible as it was written.
    builder never decrypts it; its text is the ciphertext (so an edit counts)."""

    ciphertext: str

    def __str__(self) -> str:
        return self.ciphertext


class YamlLimitError(YamlError):
    """Over one of the resource limits above (not merely text YAML can't read)."""


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _Events(CParser):
        """libyaml's scanner and parser: several times faster than PyYAML's own."""

        def __init__(self, stream: str):
            CParser.__init__(self, stream)
else:  # pragma: no cover - PyYAML built without libyaml
    class _Events(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


class _LimitedLoader(Composer, _Events, SafeConstructor, Resolver):
    """A safe loader whose composer (in Python, ahead of libyaml's in the MRO) refuses
    nesting past MAX_DEPTH: composing recurses, so a 5,000-deep document would otherwise
    end in a RecursionError."""

    def __init__(self, stream: str):
        _Events.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()
                raise YamlLimitError(f"YAML: nested deeper than {MAX_DEPTH} levels",
                                     event.start_mark.line + 1
                                     if event and event.start_mark else None)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _vault(loader: _LimitedLoader, node: yaml.Node) -> VaultValue:
    """An inline `!vault` value, as Ansible's vars files may hold (kept encrypted)."""
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, "!vault must be a block of ciphertext", node.start_mark)
    return VaultValue(str(loader.construct_scalar(node)))


# What add_constructor does, without the stubs' narrower loader types.
_LimitedLoader.yaml_constructors = {**_LimitedLoader.yaml_constructors, "!vault": _vault}


def _check_expansion(root: yaml.Node) -> None:
    """Aliases may share a node many times over; count values as if every alias were
    written out, and refuse an alias that contains itself."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise YamlLimitError("YAML: an alias refers to a value that contains it",
                                 node.start_mark.line + 1)
        if depth > MAX_DEPTH:
            raise YamlLimitError(f"YAML: nested deeper than {MAX_DEPTH} levels once aliases "
                                 "are expanded", node.start_mark.line + 1)
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item, depth + 1) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        active.discard(key)
        if total > MAX_VALUES:
            raise YamlLimitError(f"YAML: over {MAX_VALUES:,} values once aliases are expanded",
                                 node.start_mark.line + 1)
        sizes[key] = total
        return total

    size(root, 1)


def _compose(text: str) -> tuple[_LimitedLoader, yaml.Node | None]:
    """The node tree of one document, within the limits above."""
    if len(text) > MAX_FILE_BYTES:
        raise YamlLimitError(f"YAML: over {MAX_FILE_BYTES:,} characters", None)
    loader = _LimitedLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node)
    except yaml.MarkedYAMLError as exc:
        loader.dispose()
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        if "maximum nesting depth" in str(exc.problem):  # libyaml's own limit (1,000)
            raise YamlLimitError(f"YAML: nested deeper than {MAX_DEPTH} levels", line) from exc
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        raise YamlError(f"YAML: {message}", line) from exc
    except yaml.YAMLError as exc:  # a reader error: a control character, bad encoding
        loader.dispose()
        raise YamlError(f"YAML: {exc}", None) from exc
    except YamlError:
        loader.dispose()
        raise
    return loader, node


def _construct(loader: _LimitedLoader, node: yaml.Node, what: str) -> Any:
    """A node's Python value; a literal YAML accepts but Python can't hold (the date
    2024-13-45, a 5,000-digit number) is the file's problem, at its line."""
    try:
        return loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        raise YamlError(f"YAML: {message}", mark.line + 1 if mark else None) from exc
    except (ValueError, OverflowError) as exc:
        # The key and the type only: the value may be a secret.
        why = str(exc).partition(":")[0].partition(";")[0]
        raise YamlError(f"{what}: not a valid {node.tag.rpartition(':')[2]} ({why})",
                        node.start_mark.line + 1) from exc


def load_mapping(text: str, file: Path) -> LocatedDoc:
    """Parse one YAML document that must be a mapping (an empty file is an empty one)."""
    loader, node = _compose(text)
    try:
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
    loader: _LimitedLoader,
    node: yaml.MappingNode,
    file: Path,
    prefix: KeyPath,
    origins: dict[KeyPath, Origin],
) -> dict[str, Any]:
    own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
    loader.flatten_mapping(node)
    # flatten_mapping puts the pairs of `<<` merges first: the mapping's own keys
    # override merged ones, as YAML's merge key says, so only own keys can be
    # duplicates. Between the maps of a merge list the later one wins, as in PyYAML and
    # so in Ansible, which reads the same files (the YAML spec has the earlier win).
    merged = len(node.value) - own
    result: dict[str, Any] = {}
    from_merge: set[str] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = _construct(loader, key_node, "key")
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise YamlError(f"key {key!r:.40} must be a string", line)
        path = (*prefix, key)
        if key in result:
            if index >= merged and key not in from_merge:
                raise YamlError(f"duplicate key {'.'.join(path)!r}", line)
            for stale in _paths(result[key], path):
                origins.pop(stale, None)
        if index < merged:
            from_merge.add(key)
        else:
            from_merge.discard(key)
        origins[path] = Origin(str(file), file, line)
        if isinstance(value_node, yaml.MappingNode):
            result[key] = _mapping(loader, value_node, file, path, origins)
        else:
            result[key] = _construct(loader, value_node, ".".join(path))
    return result


def _paths(value: Any, path: KeyPath) -> Iterator[KeyPath]:
    """The key paths under a mapping value (what an overriding key's origins replace)."""
    if isinstance(value, dict):
        for key, item in value.items():
            sub = (*path, str(key))
            yield sub
            yield from _paths(item, sub)


def safe_load(text: str) -> Any:
    """Any one YAML document (a playbook, a task file), within the limits above."""
    loader, node = _compose(text)
    try:
        return None if node is None else _construct(loader, node, "value")
    finally:
        loader.dispose()


def parse_scalar(text: str) -> Any:
    """A `-e key=value` value, read the way YAML reads a scalar (3 → int, true → bool);
    text YAML can't read stays text. Over the limits above is a YamlError."""
    if not text.strip():
        return ""
    try:
        loader, node = _compose(text)
    except YamlLimitError:
        raise
    except YamlError:
        return text
    try:
        return None if node is None else _construct(loader, node, "value")
    except YamlError:
        return text
    finally:
        loader.dispose()


def merge(base: LocatedDoc, over: LocatedDoc) -> LocatedDoc:
    """Mappings merge key by key; anything else replaces (docs/architecture.md, "Vars layers and
    precedence").

    Linear in the keys of both layers: a replaced path drops the origins under it in
    one pass over the base's origins.
    """
    replaced = {path for path in over.origins
                if not (isinstance(_at(base.values, path), Mapping)
                        and isinstance(_at(over.values, path), Mapping))}
    origins = {path: origin for path, origin in base.origins.items()
               if not any(path[:size] in replaced for size in range(1, len(path) + 1))}
    origins.update(over.origins)
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
