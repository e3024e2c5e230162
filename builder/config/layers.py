"""Config: the vars layers of one (app, env, comp), Jinja, origins and validation.

Layers, lowest first: builder defaults, vars/<app>/common/common.yml,
vars/<app>/common/<comp>.yml, vars/<app>/<env>/common.yml, vars/<app>/<env>/<comp>.yml,
then `-e key=value`. Files named *.vault.yml are never layers: Ansible alone reads them.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jinja2

from builder import sandbox
from builder.config.keys import DEFAULTS, KEYS, component_problem, parse_settings
from builder.config.layout import Layout, check_name
from builder.config.models import Combo, Settings
from builder.config.source import (
    MAX_FILE_BYTES,
    KeyPath,
    LocatedDoc,
    Origin,
    VaultValue,
    YamlError,
    load_mapping,
    merge,
    parse_scalar,
)
from builder.errors import ConfigError, Problem, ValidationFailed
from builder.output import table
from builder.redact import looks_secret

VAULT_HEADER = b"$ANSIBLE_VAULT;"
DEFAULTS_LAYER = "<builder defaults>"
CLI_LAYER = "<command line -e>"
BUILTIN_LAYER = "<built-in>"

# Keys rendered strictly: the ones builder reads (`builder keys`) and the built-ins.
# Every other value renders as far as the layers take it; the rest is Ansible's to do.
BUILDER_KEYS = frozenset({*(key.name for key in KEYS), "app", "env", "comp",
                          "codedeploy_agent_install"})
BY_ANSIBLE = "(resolved by Ansible)"


def is_builder_key(key: str) -> bool:
    """Whether builder reads the key itself (rendered strictly, passed as an extra var)."""
    return key in BUILDER_KEYS or key.startswith("builder_")

_WHOLE_EXPR_RE = re.compile(r"\s*\{\{(?P<expr>(?:(?!\}\}|\{\{|\{%).)*)\}\}\s*", re.DOTALL)


@dataclass(frozen=True)
class ResolvedVars:
    """Every var of one combo after layering and Jinja, each with its origin."""

    root: Path
    combo: Combo
    values: Mapping[str, Any]
    origins: Mapping[str, Origin]
    files: tuple[Path, ...]
    settings: Settings
    # Values left as written: they name something only Ansible knows (a fact, group_vars).
    by_ansible: frozenset[str] = frozenset()

    exit_code = 0

    def to_json(self) -> dict[str, Any]:
        """`builder vars --json`: values and the file:line each came from."""
        document = {
            "app": self.combo.app, "env": self.combo.env, "comp": self.combo.comp,
            "vars": json.loads(json.dumps(dict(self.values), default=_shown)),
            "origins": {key: self.origin(key) for key in self.values},
        }
        if self.by_ansible:
            document["resolved_by_ansible"] = sorted(self.by_ansible)
        return document

    def to_text(self) -> str:
        rows = [(key, _show(value) + (f" {BY_ANSIBLE}" if key in self.by_ansible else ""),
                 self.origin(key)) for key, value in sorted(self.values.items())]
        return table(("key", "value", "origin"), rows)

    @property
    def playbook_path(self) -> Path:
        """The comp's provisioning playbook in the infra repo (it may not exist)."""
        return self.root / self.settings.playbook

    def origin(self, key: str) -> str:
        return self.origins[key].show(self.root)

    def in_region(self, region: str) -> ResolvedVars:
        """This combo aimed at another region of its env (see `Settings.in_region`)."""
        return replace(self, settings=self.settings.in_region(region))

    def problem(self, key: str, message: str) -> ConfigError:
        return _error_at(self.origins.get(key), f"{key}: {message}")


@dataclass
class ConfigLoader:
    """Reads and caches the vars files of one infra repo; resolves combos from them.

    One loader serves a whole `validate` run so each file is parsed once.
    """

    layout: Layout
    overrides: Mapping[str, str] = field(default_factory=dict)
    allow_outside_root: bool = False  # layers that are symlinks to files outside the root
    _docs: dict[Path, LocatedDoc] = field(default_factory=dict, repr=False)
    _vault_checked: set[Path] = field(default_factory=set, repr=False)
    _targets: dict[Path, Path] = field(default_factory=dict, repr=False)  # layer -> real file

    def __post_init__(self) -> None:
        self._jinja = sandbox.Sandbox()
        self._real_root = self.layout.root.resolve()

    # -- enumeration --------------------------------------------------------
    def apps(self) -> list[str]:
        return self.layout.apps()

    def envs(self, app: str) -> list[str]:
        check_name("app", app)
        if not (self.layout.vars_dir / app).is_dir():
            raise ConfigError(
                f"unknown app {app!r}: no folder vars/{app}/ "
                f"(apps: {', '.join(self.apps()) or 'none'})"
            )
        return self.layout.envs(app)

    def components(self, app: str, env: str) -> list[str]:
        """The comps of an env: its resolved `components` list."""
        self._check_env(app, env)
        values, origins, _ = self._layered(app, env, None)
        if "components" not in values:
            # Located at the env's own file so `validate` files the problem under the env.
            raise ConfigError(f"components: required (the list of comps of {app}/{env}); "
                              f"{_where_to_set(self.layout, app, env, None)}",
                              file=self.layout.vars_dir / app / env / "common.yml")
        resolved = _Resolver(self._jinja, values, origins).value("components")
        problem = component_problem(resolved)
        if problem:
            raise _error_at(origins.get(("components",)), f"components: {problem}")
        return list(resolved)


    def combos(
        self, app: str | None = None, env: str | None = None, comp: str | None = None
    ) -> Iterator[Combo | Problem]:
        """Every (app, env, comp) in scope; a Problem where an env's comps can't be read.

        `env` without `app` means that env of every app that has one.
        """
        apps = [app] if app else self.apps()
        if env and not app and not any(env in self.layout.envs(each) for each in apps):
            raise ConfigError(f"no env {env!r} in any app (vars/*/{env}/)")
        for each_app in apps:
            if env and not app and env not in self.layout.envs(each_app):
                continue
            try:
                envs = [env] if env else self.envs(each_app)
            except ConfigError as exc:
                if app:
                    raise
                # A stray or misnamed folder under vars/ is its own problem; the other
                # apps are still checked.
                yield Problem(exc.message, self.layout.vars_dir / each_app)
                continue
            for each_env in envs:
                try:
                    comps = self.components(each_app, each_env)
                except ConfigError as exc:
                    yield exc.problem
                    continue
                for each_comp in comps:
                    if comp is None or comp == each_comp:
                        yield Combo(each_app, each_env, each_comp)

    # -- resolution ---------------------------------------------------------
    def resolve(self, app: str, env: str, comp: str, *,
                check_vault_files: bool = True) -> ResolvedVars:
        """Resolve one combo; every problem found is reported (ValidationFailed).

        A plaintext `*.vault.yml` beside the layers is refused unless `check_vault_files`
        is False (`validate` reports it among the play's other problems instead).
        """
        self._check_env(app, env)
        check_name("comp", comp)
        values, origins, files = self._layered(app, env, comp)
        if check_vault_files:
            for folder in {path.parent for path in files} | {self.layout.vars_dir / app / env}:
                self._check_vault_files(folder)
        resolver = _Resolver(self._jinja, values, origins)
        problems: list[Problem] = []
        resolved: dict[str, Any] = {}
        by_ansible: set[str] = set()
        for key in values:
            try:
                resolved[key] = resolver.value(key)
            except _Unknown as exc:
                if is_builder_key(key):
                    problems.append(exc.problem)
                else:  # Ansible renders it at use, where the name is known
                    resolved[key] = values[key]
                    by_ansible.add(key)
            except ConfigError as exc:
                problems.append(exc.problem)
            if is_builder_key(key) and isinstance(resolved.get(key), VaultValue):
                problems.append(_error_at(origins.get((key,)), (
                    f"{key}: a !vault value, but builder reads this key itself and never "
                    "decrypts: write it in plain text (secrets belong in vault files)")).problem)
        top_origins = {key: origins[(key,)] for key in resolved}
        settings = None
        if not problems:
            settings, problems = _settings(resolved, top_origins, self.layout,
                                           Combo(app, env, comp))
        if problems or settings is None:
            raise ValidationFailed(problems)
        return ResolvedVars(self.layout.root, Combo(app, env, comp), resolved, top_origins,
                            tuple(files), settings, frozenset(by_ansible))

    def _check_env(self, app: str, env: str) -> None:
        check_name("env", env)
        envs = self.envs(app)
        if env not in envs:
            raise ConfigError(
                f"unknown env {env!r} of app {app!r}: no folder vars/{app}/{env}/ "
                f"(envs: {', '.join(envs) or 'none'})"
            )

    def _layered(
        self, app: str, env: str, comp: str | None
    ) -> tuple[dict[str, Any], dict[KeyPath, Origin], list[Path]]:
        doc = LocatedDoc(dict(DEFAULTS), {(key,): Origin(DEFAULTS_LAYER) for key in DEFAULTS})
        files = []
        for path in self.layout.layer_files(app, env, comp):
            if _layer_exists(path):
                files.append(path)
                doc = merge(doc, self._layer(path))
        cli: dict[str, Any] = {}
        for key, text in self.overrides.items():
            try:
                cli[key] = parse_scalar(text)
            except YamlError as exc:
                raise ConfigError(f"-e {key}: {exc}") from exc
        doc = merge(doc, LocatedDoc(cli, {(key,): Origin(CLI_LAYER) for key in cli}))
        builtins = {"app": app, "env": env} | ({"comp": comp} if comp else {})
        for key, value in builtins.items():
            if key in doc.values and doc.values[key] != value:
                raise _error_at(doc.origins[(key,)],
                                f"{key}: is built in ({value!r}) and can't be set")
        doc = merge(doc, LocatedDoc(builtins, {(key,): Origin(BUILTIN_LAYER) for key in builtins}))
        return doc.values, doc.origins, files

    def _layer(self, path: Path) -> LocatedDoc:
        """A layer's document. One whose file is outside the root (a symlink leading out
        of it) is someone else's file: refused unless allowed, before it is read, and
        then its values say so."""
        if path not in self._targets:
            self._targets[path] = path.resolve()
        target = self._targets[path]
        if target.is_relative_to(self._real_root):
            return self._load(path)
        if not self.allow_outside_root:
            raise ConfigError(f"a symlink to {target}, outside the root: allow layers "
                              "outside the root with --allow-outside-root or "
                              "BUILDER_ALLOW_OUTSIDE_ROOT=1", file=path)
        doc = self._load(path)
        return LocatedDoc(doc.values, {key: replace(origin, outside_root=target)
                                       for key, origin in doc.origins.items()})

    def _check_vault_files(self, folder: Path) -> None:
        """`*.vault.yml` are read by Ansible only, and must be encrypted: a plaintext one
        is a secret committed in the clear."""
        if folder in self._vault_checked:
            return
        for path in sorted(folder.glob("*.vault.yml")) if folder.is_dir() else []:
            try:
                with path.open("rb") as handle:
                    head = handle.read(len(VAULT_HEADER))
            except OSError as exc:
                raise ConfigError(f"can't read: {exc.strerror}", file=path) from exc
            if head != VAULT_HEADER:
                raise ConfigError("not encrypted: a *.vault.yml must be ansible-vault "
                                  f"encrypted (ansible-vault encrypt {path.name})",
                                  file=path, line=1)
        self._vault_checked.add(folder)

    def _load(self, path: Path) -> LocatedDoc:
        if path not in self._docs:
            try:
                if path.stat().st_size > MAX_FILE_BYTES:
                    raise ConfigError(f"over {MAX_FILE_BYTES:,} bytes: not a vars file",
                                      file=path)
                self._docs[path] = load_mapping(path.read_text(encoding="utf-8"), path)
            except YamlError as exc:
                raise ConfigError(str(exc), file=path, line=exc.line) from exc
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"can't read: {exc}", file=path) from exc
        return self._docs[path]


class _Resolver:
    """Renders values lazily so one var may use another, as Ansible does."""

    def __init__(
        self, env: sandbox.Sandbox, raw: Mapping[str, Any], origins: Mapping[KeyPath, Origin]
    ):
        self._env = env
        self._raw = raw
        self._origins = origins
        self._done: dict[str, Any] = {}
        self._active: list[str] = []

    def value(self, key: str) -> Any:
        if key in self._done:
            return self._done[key]
        if key in self._active:
            cycle = " -> ".join([*self._active[self._active.index(key):], key])
            raise self._error((key,), f"refers to itself: {cycle}")
        self._active.append(key)
        try:
            rendered = self._render(self._raw[key], (key,))
        finally:
            self._active.pop()
        self._done[key] = rendered
        return rendered

    def _render(self, value: Any, path: KeyPath) -> Any:
        if isinstance(value, str):
            return self._render_string(value, path)
        if isinstance(value, Mapping):
            return {k: self._render(v, (*path, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [self._render(item, path) for item in value]
        return value

    def _render_string(self, text: str, path: KeyPath) -> Any:
        if "{{" not in text and "{%" not in text:
            return text
        context = _LazyContext(self)
        try:
            whole = _WHOLE_EXPR_RE.fullmatch(text)
            if whole:
                # A value that is one expression keeps its type (a list stays a list).
                return sandbox.evaluate(self._env, whole["expr"], context)
            return sandbox.render(self._env.compiled(text), context)
        except sandbox.SecurityError as exc:
            raise self._error(path, f"Jinja sandbox: {exc}") from exc
        except jinja2.UndefinedError as exc:
            unknown = self._error(path, f"Jinja: {exc.message}")
            raise _Unknown(unknown.message, file=unknown.problem.file,
                           line=unknown.problem.line) from exc
        except jinja2.TemplateSyntaxError as exc:
            raise self._error(path, f"Jinja syntax: {exc.message}") from exc
        except ConfigError:
            raise
        except Exception as exc:
            # Python's own messages quote values (int('...')): not for a secret's key.
            why = type(exc).__name__ if looks_secret(path[-1]) else f"{exc}"
            raise self._error(path, f"Jinja: {why}") from exc

    def _error(self, path: KeyPath, message: str) -> ConfigError:
        origin = self._origins.get(path) or self._origins.get(path[:1])
        return _error_at(origin, f"{'.'.join(path)}: {message}")


class _Unknown(ConfigError):
    """A value names something the layers don't define (strict for builder's keys)."""


class _LazyContext(Mapping[str, Any]):
    """What a Jinja expression in a value sees: the other vars, rendered on first use."""

    def __init__(self, resolver: _Resolver):
        self._resolver = resolver

    def __getitem__(self, key: str) -> Any:
        if key not in self._resolver._raw:
            raise KeyError(key)
        return self._resolver.value(key)

    def __contains__(self, key: object) -> bool:
        return key in self._resolver._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._resolver._raw)

    def __len__(self) -> int:
        return len(self._resolver._raw)


def _layer_exists(path: Path) -> bool:
    """Whether a layer is there (a missing optional one is not); something in its place
    that isn't a regular file is a ConfigError, never silently skipped."""
    if not os.path.lexists(path):
        return False
    if path.is_file():
        return True
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python < 3.13 reports a loop this way
            raise ConfigError("a symlink loop, not a vars file", file=path) from None
        except OSError as exc:
            what = "a symlink loop" if exc.errno == errno.ELOOP else "a dangling symlink"
            raise ConfigError(f"{what}, not a vars file", file=path) from None
    kind = "a folder" if path.is_dir() else "not a regular file"
    raise ConfigError(f"{kind}, not a vars file", file=path)


def _error_at(origin: Origin | None, message: str) -> ConfigError:
    """A ConfigError at the file and line a value came from (none for built-in layers)."""
    if origin is not None and origin.layer == CLI_LAYER:
        message = f"-e {message}"
    return ConfigError(message, file=origin.file if origin else None,
                       line=origin.line if origin else None)


# -- the builder keys (declared in builder.config.keys) -----------------------


def _where_to_set(layout: Layout, app: str, env: str, comp: str | None) -> str:
    """Ends the message of a missing key: the layer files that could hold it, lowest
    first (an env's `components` only in the env-wide ones: comp=None)."""
    files = [layout.relative(path) for path in layout.layer_files(app, env, comp)]
    return f"set it in {', '.join(files[:-1])} or {files[-1]}"



def _settings(
    values: Mapping[str, Any], origins: Mapping[str, Origin], layout: Layout, combo: Combo
) -> tuple[Settings | None, list[Problem]]:
    """Type-check the keys the tool reads; collect every problem, not just the first."""
    problems: list[Problem] = []

    def report(key: str, message: str) -> None:
        if message.startswith("required") or message.endswith("is required"):
            # A missing key: name the layer files that could hold it.
            comp = None if key == "components" else combo.comp
            message += f"; {_where_to_set(layout, combo.app, combo.env, comp)}"
        problems.append(_error_at(origins.get(key), f"{key}: {message}").problem)

    settings = parse_settings(values, combo, layout, report)
    return (None if problems else settings), problems


def _show(value: Any) -> str:
    if isinstance(value, VaultValue):
        return "(vault)"
    return value if isinstance(value, str) else json.dumps(value, default=_shown)


def _shown(value: Any) -> str:
    """JSON for what plain JSON lacks: `(vault)` for encrypted values, else the text."""
    return "(vault)" if isinstance(value, VaultValue) else str(value)

