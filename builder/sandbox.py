"""The one Jinja environment builder renders with: sandboxed, and bounded in time and size.

Vars values, `-e` values and `.pkr.hcl.j2` templates all come from a checkout, and
commands people treat as read-only (`vars`, `validate --offline`, `render`, `status`,
`rebuild --dry-run`) render them. So templates get Jinja's immutable sandbox (no
`__class__`/`__subclasses__` walks, no `list.append`), and what a template may
allocate or loop over is bounded, so no input turns a render into a hang:

- output: at most MAX_OUTPUT characters per rendered value or template;
- `range()`: at most MAX_RANGE items each, MAX_ITERATIONS items per render in all;
- `*`, `**`, `%` and format widths: no result past MAX_OUTPUT characters (or as
  many bits for numbers).

Breaking a limit or the sandbox raises `jinja2.sandbox.SecurityError`; callers turn it
into an InputError at the file:line and key being rendered.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from functools import wraps
from typing import Any, cast, overload

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT = 1_000_000
MAX_RANGE = 10_000
MAX_ITERATIONS = 1_000_000
# Python refuses to print integers of over 4,300 digits; stay well under that.
MAX_INT_BITS = 13_000
_COMPILED_CACHE = 4096
_BIG_WIDTH_RE = re.compile(r"\d{7,}")  # a format width of a million or more

# Items handed out by range() in the current render (each thread renders in its own
# context, so parallel bakes don't share a budget).
_iterations: ContextVar[list[int] | None] = ContextVar("builder_jinja_iterations", default=None)

__all__ = ["MAX_ITERATIONS", "MAX_OUTPUT", "MAX_RANGE", "Sandbox", "SecurityError",
           "evaluate", "render"]


class _BoundedRange(Sequence[int]):
    """range(), charging every item it yields to the render's iteration budget."""

    def __init__(self, inner: range):
        self._inner = inner

    def __len__(self) -> int:
        return len(self._inner)

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[int]: ...

    def __getitem__(self, index: int | slice) -> int | Sequence[int]:
        return self._inner[index]

    def __iter__(self) -> Iterator[int]:
        budget = _iterations.get()
        for item in self._inner:
            if budget is not None:
                budget[0] += 1
                if budget[0] > MAX_ITERATIONS:
                    raise SecurityError(f"loops ran over {MAX_ITERATIONS:,} items")
            yield item

    def __repr__(self) -> str:
        return repr(self._inner)


def _range(*args: int) -> _BoundedRange:
    inner = range(*args)
    if len(inner) > MAX_RANGE:
        raise SecurityError(f"range of {len(inner):,} items (at most {MAX_RANGE:,})")
    return _BoundedRange(inner)


def _too_big(value: Any) -> bool:
    if isinstance(value, str | bytes | list | tuple):
        return len(value) > MAX_OUTPUT
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() > MAX_INT_BITS
    return False


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A built-in filter whose numeric arguments (widths, counts) stay under MAX_OUTPUT."""

    @wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        for arg in (*args[1:], *kwargs.values()):
            if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_OUTPUT:
                raise SecurityError(f"filter {name}: argument {arg} is over {MAX_OUTPUT:,}")
        result = function(*args, **kwargs)
        if _too_big(result):
            raise SecurityError(f"filter {name}: result over {MAX_OUTPUT:,} characters")
        return result

    return call


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with StrictUndefined and the limits above."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **options: Any):
        super().__init__(undefined=jinja2.StrictUndefined,
                         autoescape=False,  # renders YAML values and HCL, not HTML
                         **options)
        self.globals["range"] = _range
        # lipsum(n) builds text of any size and no template of ours needs it.
        self.globals.pop("lipsum", None)
        self._compiled: dict[str, jinja2.Template] = {}
        for name in ("center", "indent", "wordwrap", "truncate", "format", "batch", "slice",
                     "join", "replace"):
            self.filters[name] = _bounded_filter(name, self.filters[name])

    def compiled(self, source: str) -> jinja2.Template:
        """`from_string`, compiled once per distinct text: most vars values are the same
        few texts (`{{ app }}-{{ env }}-{{ comp }}`) across every combo of a run."""
        template = self._compiled.get(source)
        if template is None:
            if len(self._compiled) >= _COMPILED_CACHE:
                self._compiled.clear()
            template = self._compiled[source] = self.from_string(source)
        return template

    def call_binop(self, context: jinja2.runtime.Context, operator_name: str, left: Any,
                   right: Any) -> Any:
        if operator_name == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS:
                raise SecurityError(f"{left.bit_length()}-bit number to the power {right} "
                                    "is too large")
            return operator.pow(left, right)
        if operator_name == "*":
            sizes = [len(side) for side in (left, right)
                     if isinstance(side, str | list | tuple)]
            counts = [side for side in (left, right)
                      if isinstance(side, int) and not isinstance(side, bool)]
            if sizes and counts and sizes[0] * counts[0] > MAX_OUTPUT:
                raise SecurityError(f"repeating {sizes[0]} items {counts[0]} times is over "
                                    f"{MAX_OUTPUT:,}")
        if operator_name == "%" and isinstance(left, str) and _BIG_WIDTH_RE.search(left):
            raise SecurityError(f"format width over {MAX_OUTPUT:,} characters")
        result = super().call_binop(context, operator_name, left, right)
        if _too_big(result):
            raise SecurityError(f"result of {operator_name!r} is over {MAX_OUTPUT:,}")
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`"{:>999999999}".format(x)`: widths are bounded like everything else."""
        wrapped = super().wrap_str_format(value)
        if wrapped is not None and _BIG_WIDTH_RE.search(str(value.__self__)):
            raise SecurityError(f"format width over {MAX_OUTPUT:,} characters")
        return wrapped


class _WithGlobals(Mapping[str, Any]):
    """A render's variables, then the environment's globals (range, dict, ...): a shared
    context (one that reads a lazy mapping instead of copying it) has no globals."""

    def __init__(self, variables: Mapping[str, Any], globals_: Mapping[str, Any]):
        self._variables = variables
        self._globals = globals_

    def __getitem__(self, key: str) -> Any:
        if key in self._variables:
            return self._variables[key]
        return self._globals[key]

    def __contains__(self, key: object) -> bool:
        return key in self._variables or key in self._globals

    def __iter__(self) -> Iterator[str]:
        yield from self._variables
        yield from (key for key in self._globals if key not in self._variables)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def copy(self) -> dict[str, Any]:
        """What Jinja copies to show a template's locals in a rewritten traceback: the
        globals only, so an error never renders (or fails on) every lazy variable."""
        return dict(self._globals)


class _Budget:
    """Opens the iteration budget of one top-level render (nested renders share it)."""

    def __enter__(self) -> None:
        self._token = _iterations.set([0]) if _iterations.get() is None else None

    def __exit__(self, *_: object) -> None:
        if self._token is not None:
            _iterations.reset(self._token)


def render(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """The template's text; `context` is read, not copied (it may be lazy)."""
    with _Budget():
        run = template.new_context(
            cast("dict[str, Any]", _WithGlobals(context, template.globals)), shared=True)
        size = 0
        chunks: list[str] = []
        try:
            for chunk in template.root_render_func(run):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise SecurityError(f"output over {MAX_OUTPUT:,} characters")
                chunks.append(chunk)
        except Exception:
            # Re-raised with the template's own file and lines in the traceback, as
            # Template.render does.
            template.environment.handle_exception()
        return "".join(chunks)


def evaluate(environment: Sandbox, expression: str, context: Mapping[str, Any]) -> Any:
    """The value of one Jinja expression, keeping its type (a list stays a list)."""
    template = environment.compiled(f"{{% set result = ({expression}) %}}")
    with _Budget():
        run = template.new_context(
            cast("dict[str, Any]", _WithGlobals(context, environment.globals)), shared=True)
        try:
            for _ in template.root_render_func(run):
                pass
        except Exception:
            environment.handle_exception()
        result = run.vars["result"]
    if isinstance(result, jinja2.Undefined):
        str(result)  # raises UndefinedError naming what is missing
    if _too_big(result):
        raise SecurityError(f"value over {MAX_OUTPUT:,} characters")
    return result
