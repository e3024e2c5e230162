"""Render: a combo's resolved vars → the Packer template text and its var file.

Templates are looked up in the root's packer/ first, then among the bundled ones;
`.pkr.hcl.j2` goes through Jinja first. python-hcl2 then reads the result, and the
declared `variable` blocks decide what goes into the var file. A template that doesn't
call back into builder itself is adapted to builder's contract (builder.render.adapt),
or refused with the reasons.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from builder import private, sandbox
from builder.config.layers import ResolvedVars
from builder.config.layout import Layout
from builder.errors import Problem, TemplateError, ValidationFailed
from builder.packer import REQUIRED_PLUGINS_BLOCK, PackerVersion
from builder.render import adapt

TEMPLATE_SUFFIXES = (".pkr.hcl", ".pkr.hcl.j2")
_ERROR_LINE_RE = re.compile(r"line (\d+)")


@dataclass(frozen=True)
class Variable:
    """A variable a Packer template declares."""

    name: str
    type_expr: str | None
    has_default: bool
    line: int | None


@dataclass(frozen=True)
class Rendered:
    """A combo's template, rendered and parsed, and the values its variables get."""

    resolved: ResolvedVars
    template_name: str
    source: Path
    hcl: str
    variables: tuple[Variable, ...]
    var_values: Mapping[str, Any]
    # A user template's adapted copy: `hcl` is then the adapted text, this the record.
    adaptation: adapt.Adaptation | None = None
    original_hcl: str = ""  # the rendered text before adaptation ("" when not adapted)

    @property
    def file_name(self) -> str:
        return f"{self.template_name}.pkr.hcl"

    @property
    def network(self) -> Mapping[str, Any]:
        """What decides the builder instance's VPC: the var values, or what an adapted
        template sets itself (subnet_id, subnet_filter, vpc_filter)."""
        extra = self.adaptation.network if self.adaptation is not None else {}
        return {**self.var_values, **extra}

    @property
    def template_files(self) -> tuple[Path, ...]:
        """Local files an adapted template's Packer steps read (fingerprint inputs)."""
        return self.adaptation.files if self.adaptation is not None else ()

    def template_line(self, line: int | None) -> int | None:
        """A line of `hcl` (as Packer reports it), as a line of the user's template."""
        if self.adaptation is None:
            return source_line(line, self.hcl, self.source)
        return source_line(self.adaptation.rendered_line(line), self.original_hcl, self.source)

    def packer_text(self) -> str:
        """`hcl` as Packer reads it: Packer runs in the template's own folder (relative
        paths resolve as when the user runs `packer build` there) on a copy written
        elsewhere, so `path.root` is pinned to that folder. Not in `hcl`: the
        fingerprint must not depend on where the repo is checked out."""
        folder = json.dumps(str(self.source.parent.resolve()))
        return "".join(
            line if line.lstrip().startswith(("#", "//")) else
            re.sub(r"\bpath\.root\b", lambda _: folder, line)
            for line in self.hcl.splitlines(keepends=True))

    def var_file_json(self, run_values: Mapping[str, Any] | None = None) -> str:
        """The var file; `run_values` (builder_* of one bake) only where declared."""
        declared = {v.name for v in self.variables}
        values = dict(self.var_values)
        values.update({k: v for k, v in (run_values or {}).items() if k in declared})
        return json.dumps(values, indent=2, sort_keys=True) + "\n"

    def digest(self) -> str:
        """Hash of the rendered template and the config-derived var values."""
        blob = self.hcl + "\0" + json.dumps(self.var_values, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class RenderedFiles:
    """The files `builder render` wrote."""

    template: Path
    var_file: Path
    vars_json: Path

    exit_code = 0

    def to_json(self) -> dict[str, str]:
        return {"template": str(self.template), "var_file": str(self.var_file),
                "vars": str(self.vars_json)}

    def to_text(self) -> str:
        return "\n".join(f"{name:9} {path}" for name, path in self.to_json().items())


@dataclass
class Renderer:
    """Renders combos of one infra repo for one Packer version; parses each distinct
    template text once (python-hcl2 is slow, and most combos share a text)."""

    layout: Layout
    packer_version: PackerVersion
    _parsed: dict[str, tuple[Variable, ...]] = field(default_factory=dict, repr=False)
    _jinja: dict[Path, sandbox.Sandbox] = field(default_factory=dict, repr=False)
    _adapted: dict[str, adapt.Adaptation] = field(default_factory=dict, repr=False)

    def find_template(self, name: str) -> Path:
        for folder in self.layout.template_dirs():
            for suffix in TEMPLATE_SUFFIXES:
                candidate = folder / f"{name}{suffix}"
                if candidate.is_file():
                    return candidate
        searched = ", ".join(self.layout.relative(d) for d in self.layout.template_dirs())
        raise TemplateError(f"packer template {name!r} not found (looked in {searched})")

    def render(self, resolved: ResolvedVars) -> Rendered:
        name = resolved.settings.packer_template
        try:
            source = self.find_template(name)
        except TemplateError as exc:
            raise resolved.problem("packer_template", exc.message) from exc
        hcl = self._text(source, resolved)
        variables = self._variables(hcl, source)
        values = _var_values(variables, resolved, source)
        if adapt.follows_contract(hcl):
            gaps = adapt.contract_gaps(hcl)
            if gaps:
                raise TemplateError(
                    f"calls back into builder (var.{adapt.CALLBACK_VARIABLE}) but doesn't use "
                    f"{', '.join('var.' + g for g in gaps)}: use them as the bundled ubuntu "
                    "template does, or drop the callback and let builder adapt the template",
                    file=source)
            return Rendered(resolved, name, source, hcl, variables, values)
        adaptation = self._adapt(hcl, source, resolved, values)
        if adaptation.refusals:
            raise ValidationFailed([
                Problem(f"template {source.name}: {note.text}", source,
                        source_line(note.line, hcl, source))
                for note in adaptation.refusals])
        known = {v.name for v in variables}
        added = tuple(Variable(n, None, True, None) for n in adaptation.declared
                      if n not in known)
        return Rendered(resolved, name, source, adaptation.text, variables + added, values,
                        adaptation, hcl)

    def check(self, resolved: ResolvedVars) -> tuple[Path, str, adapt.Adaptation | None]:
        """`builder template check`: the template, its rendered text, and what adapting it
        changes and can't handle (None: it calls back into builder itself)."""
        source = self.find_template(resolved.settings.packer_template)
        hcl = self._text(source, resolved)
        variables = self._variables(hcl, source)
        if adapt.follows_contract(hcl):
            return source, hcl, None
        values = _var_values(variables, resolved, source)
        return source, hcl, self._adapt(hcl, source, resolved, values)

    def _adapt(self, hcl: str, source: Path, resolved: ResolvedVars,
               values: Mapping[str, Any]) -> adapt.Adaptation:
        context = adapt.Context(source.parent.resolve(), resolved.playbook_path.resolve(),
                                values, self.layout.root,
                                self.packer_version.needs_required_plugins,
                                template_provisioning(resolved))
        key = hashlib.sha256("\0".join((
            hcl, str(context.packer_dir), str(context.playbook),
            str(context.template_provisioning),
            json.dumps(values, sort_keys=True, default=str))).encode()).hexdigest()
        if key not in self._adapted:
            self._adapted[key] = adapt.adapt(hcl, context)
        return self._adapted[key]

    def _text(self, source: Path, resolved: ResolvedVars) -> str:
        text = read_template(source)
        if source.name.endswith(".j2"):
            env = self._jinja.get(source.parent)
            if env is None:
                env = sandbox.Sandbox(loader=jinja2.FileSystemLoader(str(source.parent)),
                                      keep_trailing_newline=True)
                self._jinja[source.parent] = env
            try:
                template = env.get_template(source.name)
                text = sandbox.render(
                    template, {**resolved.values, "packer_version": str(self.packer_version)})
            except jinja2.TemplateSyntaxError as exc:
                # An included template's own syntax error names that file.
                file = Path(exc.filename) if exc.filename else source
                raise TemplateError(f"Jinja syntax: {exc.message}", file=file,
                                    line=exc.lineno) from exc
            except jinja2.TemplateNotFound as exc:
                raise TemplateError(f"Jinja: template {exc.name!r} not found (looked in "
                                    f"{self.layout.relative(source.parent)})", file=source,
                                    line=_jinja_line(exc, source)) from exc
            except jinja2.UndefinedError as exc:
                raise TemplateError(f"Jinja: {exc.message}", file=source,
                                    line=_jinja_line(exc, source)) from exc
            except sandbox.SecurityError as exc:
                raise TemplateError(f"Jinja sandbox: {exc}", file=source,
                                    line=_jinja_line(exc, source)) from exc
            except (UnicodeDecodeError, OSError) as exc:
                raise TemplateError(f"Jinja: can't read an included template: {exc}",
                                    file=source, line=_jinja_line(exc, source)) from exc
            except Exception as exc:  # a template's own expression failed: 1/0, int('x')
                raise TemplateError(f"Jinja: {type(exc).__name__}: {exc}", file=source,
                                    line=_jinja_line(exc, source)) from exc
        has_plugins_block = re.search(r"^[ \t]*required_plugins\s*\{", text, re.MULTILINE)
        if self.packer_version.needs_required_plugins and not has_plugins_block:
            text = REQUIRED_PLUGINS_BLOCK + "\n" + text
        elif (has_plugins_block and not self.packer_version.needs_required_plugins
              and adapt.follows_contract(text)):  # a user template's copy drops the block
            raise TemplateError(
                f"declares required_plugins, which Packer {self.packer_version} rejects "
                "(builder adds the block itself on Packer 1.7+)", file=source,
            )
        return text

    def _variables(self, hcl: str, source: Path) -> tuple[Variable, ...]:
        key = hashlib.sha256(hcl.encode()).hexdigest()
        if key not in self._parsed:
            self._parsed[key] = _parse_variables(hcl, source)
        return self._parsed[key]


PROVISIONING_VAR = "builder_provisioning"


def template_provisioning(resolved: ResolvedVars) -> bool:
    """`builder_provisioning: template` (the escape hatch) rather than `builder`."""
    value = resolved.values.get(PROVISIONING_VAR, "builder")
    if value in (None, "builder"):
        return False
    if value == "template":
        return True
    raise resolved.problem(PROVISIONING_VAR, f"must be builder or template, not {value!r}")


def write(rendered: Rendered, out_dir: Path, run_values: Mapping[str, Any] | None = None
          ) -> RenderedFiles:
    """Write the template, the var file and the resolved vars (what Ansible gets).

    The var file and the resolved vars may hold secrets: they are the owner's only
    (0600), wherever they go.
    """
    private.make_folders(out_dir)
    template = private.write_text(out_dir / rendered.file_name, rendered.packer_text())
    var_file = private.write_text(out_dir / f"{rendered.template_name}.pkrvars.json",
                                  rendered.var_file_json(run_values))
    vars_json = private.write_text(out_dir / "vars.json", json.dumps(
        dict(rendered.resolved.values), indent=2, sort_keys=True, default=str) + "\n")
    return RenderedFiles(template, var_file, vars_json)


# -- HCL ---------------------------------------------------------------------


def load_parser() -> None:
    """Import python-hcl2 and build its parser (a few tenths of a second, once per
    process): a command can have that done while it waits for AWS."""
    import hcl2

    hcl2.loads("")


def _parse_variables(hcl: str, source: Path) -> tuple[Variable, ...]:
    import hcl2  # slow to import; only rendering needs it

    try:
        document = hcl2.loads(hcl)
    except Exception as exc:  # python-hcl2 raises lark's exceptions
        line = getattr(exc, "line", None)
        if not isinstance(line, int):
            found = _ERROR_LINE_RE.search(str(exc))
            line = int(found.group(1)) if found else None
        column = getattr(exc, "column", None)
        token = getattr(getattr(exc, "token", None), "value", None)
        if token is not None:
            message = f"unexpected {token.strip()[:20] or 'end of line'!r}"
        else:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid HCL"
        if isinstance(column, int):
            message += f" at column {column}"
        raise TemplateError(f"HCL syntax: {message}", file=source,
                            line=source_line(line, hcl, source)) from exc
    variables = []
    source_text = read_template(source)  # lines users see: the template's own
    for block in document.get("variable", []):
        for raw_name, body in block.items():
            name = _unquote(raw_name)
            type_expr = body.get("type")
            variables.append(Variable(
                name=name,
                type_expr=_type_text(type_expr) if type_expr is not None else None,
                has_default="default" in body,
                line=_declaration_line(source_text, name),
            ))
    return tuple(variables)


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _type_text(expr: Any) -> str:
    text = str(expr)
    return text[2:-1] if text.startswith("${") and text.endswith("}") else text


def _declaration_line(text: str, name: str) -> int | None:
    found = re.search(rf'^[ \t]*variable\s+"{re.escape(name)}"', text, re.MULTILINE)
    return text.count("\n", 0, found.start()) + 1 if found else None


def source_line(rendered_line: int | None, hcl: str, source: Path) -> int | None:
    """A line of the rendered text, mapped back to the template when Jinja changed it
    (builder's own required_plugins block shifts lines by a fixed amount; a line inside
    that block is in no file of the user's)."""
    if rendered_line is None:
        return None
    body = hcl
    if hcl.startswith(REQUIRED_PLUGINS_BLOCK):
        body = hcl[len(REQUIRED_PLUGINS_BLOCK) + 1:]
        rendered_line -= REQUIRED_PLUGINS_BLOCK.count("\n") + 1
        if rendered_line < 1:
            return None
    if not source.name.endswith(".j2"):
        return rendered_line
    lines = body.splitlines()
    wanted = lines[rendered_line - 1].strip() if rendered_line <= len(lines) else ""
    if wanted:
        for number, line in enumerate(read_template(source).splitlines(), 1):
            if line.strip() == wanted:
                return number
    return rendered_line


def read_template(source: Path) -> str:
    """A template's text; unreadable or not UTF-8 is the template's problem (exit 2)."""
    try:
        return source.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateError(f"not UTF-8 text (byte {exc.start})", file=source) from exc
    except OSError as exc:
        raise TemplateError(f"can't read: {exc.strerror or exc}", file=source) from exc


def _jinja_line(exc: BaseException, source: Path) -> int | None:
    import traceback

    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == str(source) or frame.filename.endswith(source.name):
            return frame.lineno
    return None


# -- the var file ------------------------------------------------------------


def _var_values(variables: tuple[Variable, ...], resolved: ResolvedVars, source: Path
                ) -> dict[str, Any]:
    """Only declared names; a declared one with no default needs a value of its type.

    `builder_*` variables belong to `builder bake` (per run), never to config.
    """
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    # The region keys as the bake sees them: a multi-region env bakes in its first region,
    # with that region's key.
    settings = resolved.settings
    given = {**resolved.values, "aws_region": settings.aws_region,
             "kms_key_id": settings.kms_key}
    for variable in variables:
        if variable.name.startswith("builder_"):
            continue
        if variable.name not in given or given[variable.name] is None:
            if not variable.has_default:
                problems.append(Problem(
                    f"variable {variable.name!r} of template {source.name} has no default and "
                    f"no value: set {variable.name} in the vars", source, variable.line))
            continue
        value = given[variable.name]
        mismatch = type_mismatch(value, variable.type_expr) or _reserved_tags(variable, value)
        if mismatch:
            origin = resolved.origins[variable.name]
            problems.append(Problem(
                f"{variable.name}: {mismatch} (template {source.name} declares type "
                f"{variable.type_expr})", origin.file, origin.line))
            continue
        values[variable.name] = value
    if problems:
        raise ValidationFailed(problems)
    return values


def _reserved_tags(variable: Variable, value: Any) -> str | None:
    """Extra tags (`ami_tags`, `run_tags`, ...) may not set builder's own `builder:*`."""
    if not variable.name.endswith("tags") or not isinstance(value, Mapping):
        return None
    reserved = sorted(str(k) for k in value if str(k).startswith("builder:"))
    return f"{', '.join(reserved)}: builder:* tags are builder's own" if reserved else None


def type_mismatch(value: Any, type_expr: str | None) -> str | None:
    """Why `value` can't convert to the HCL type, or None when it can (as Packer's
    cty conversions allow: a number or bool converts to string, "true" to bool)."""
    if type_expr is None:
        return None
    kind, inner = _split_type(type_expr.strip())
    if kind == "any":
        return None
    if kind == "string":
        ok = isinstance(value, str | int | float | bool)
        return None if ok else f"expected a string, got {_kind(value)}"
    if kind == "number":
        if isinstance(value, bool):
            return "expected a number, got a bool"
        if isinstance(value, int | float):
            return None
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                return "expected a number, got a string that is not one"
            return None
        return f"expected a number, got {_kind(value)}"
    if kind == "bool":
        if isinstance(value, bool) or value in ("true", "false"):
            return None
        return f"expected true or false, got {_kind(value)}"
    if kind in ("list", "set", "tuple"):
        if not isinstance(value, list):
            return f"expected a list, got {_kind(value)}"
        for index, item in enumerate(value):
            element = inner if kind != "tuple" else "any"
            why = type_mismatch(item, element)
            if why:
                return f"item {index}: {why}"
        return None
    if kind == "map":
        if not isinstance(value, Mapping):
            return f"expected a map, got {_kind(value)}"
        for key, item in value.items():
            why = type_mismatch(item, inner)
            if why:
                return f"key {key!r}: {why}"
        return None
    if kind == "object":
        if not isinstance(value, Mapping):
            return f"expected an object, got {_kind(value)}"
        for attribute, attribute_type in _object_attributes(inner or ""):
            if attribute not in value:
                return f"missing attribute {attribute!r}"
            why = type_mismatch(value[attribute], attribute_type)
            if why:
                return f"attribute {attribute!r}: {why}"
        return None
    return None  # a type this check doesn't know: Packer's validate will judge


def _kind(value: Any) -> str:
    """A value's type, never the value: it may be a secret (db_password: 3)."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def _split_type(text: str) -> tuple[str, str | None]:
    found = re.fullmatch(r"(\w+)\s*(?:\((.*)\))?", text, re.DOTALL)
    if not found:
        return text, None
    return found.group(1), found.group(2)


def _object_attributes(text: str) -> list[tuple[str, str]]:
    """`{ owners = list(string), name = string }` → [("owners", "list(string)"), ...]."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    attributes: list[tuple[str, str]] = []
    depth, start = 0, 0
    for index, char in enumerate(body + ","):
        if char in "({[":
            depth += 1
        elif char in ")}]":
            depth -= 1
        elif char == "," and depth == 0:
            part = body[start:index].strip()
            start = index + 1
            if "=" in part:
                name, _, type_text = part.partition("=")
                attributes.append((name.strip(), type_text.strip()))
    return attributes
