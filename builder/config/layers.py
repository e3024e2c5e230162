"""Config: the vars layers of one (app, env, comp), Jinja, origins and validation.

Layers, lowest first: builder defaults, vars/<app>/common/common.yml,
vars/<app>/common/<comp>.yml, vars/<app>/<env>/common.yml, vars/<app>/<env>/<comp>.yml,
then `-e key=value`. Files named *.vault.yml are never layers: Ansible alone reads them.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import jinja2

from builder.config.layout import NAME_RE, Layout, check_name
from builder.config.models import Combo, Settings, SourceAmiFilter
from builder.config.source import (
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

DEFAULTS_LAYER = "<builder defaults>"
CLI_LAYER = "<command line -e>"
BUILTIN_LAYER = "<built-in>"

# Keys the tool reads, with their defaults (Jinja, rendered like any other value).
DEFAULTS: dict[str, Any] = {
    "aws_profile": None,
    "aws_role_arn": None,
    "packer_template": "ubuntu",
    "playbook": "playbooks/{{ app }}/packer-{{ comp }}.yml",
    "source_ami": None,
    "source_ami_filter": None,
    "instance_type": "t3.micro",
    # Who may reach the builder instance's SSH port (Packer's own default is the world).
    "ssh_source_cidrs": ["0.0.0.0/0"],
    "ssh_username": "ubuntu",
    "ami_name": "{{ app }}-{{ env }}-{{ comp }}",
    "encrypt_boot": True,
    "kms_key_id": "",
    "launch_template_name": "{{ app }}-{{ env }}-{{ comp }}",
    "codedeploy_application": "{{ app }}",
    "codedeploy_deployment_group": "{{ app }}-{{ env }}-{{ comp }}",
    "promote_from": None,
    "ami_keep": 5,
    "rebuild_max_age_days": 30,
    "vault_password_ssm_parameter": None,
}
REQUIRED = ("components", "aws_region", "aws_account_id")
# Keys rendered strictly: the ones builder reads (the README's tables) and the built-ins.
# Every other value renders as far as the layers take it; the rest is Ansible's to do.
BUILDER_KEYS = frozenset({*DEFAULTS, *REQUIRED, "app", "env", "comp",
                          "codedeploy_agent_install"})
BY_ANSIBLE = "(resolved by Ansible)"


def is_builder_key(key: str) -> bool:
    return key in BUILDER_KEYS or key.startswith("builder_")

_REGION_RE = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d")
_ACCOUNT_RE = re.compile(r"\d{12}")
_ROLE_RE = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+")
_AMI_RE = re.compile(r"ami-[0-9a-f]{8,17}")
_USER_RE = re.compile(r"[a-z_][a-z0-9_-]*")
# EC2's rule for AMI names is 3-128 characters; a bake appends "-<yyyymmddHHMMSS>".
_AMI_NAME_RE = re.compile(r"[A-Za-z0-9()\[\] ./'@_-]{3,100}")
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

    def problem(self, key: str, message: str) -> ConfigError:
        return _error_at(self.origins.get(key), f"{key}: {message}")


@dataclass
class ConfigLoader:
    """Reads and caches the vars files of one infra repo; resolves combos from them.

    One loader serves a whole `validate` run so each file is parsed once.
    """

    layout: Layout
    overrides: Mapping[str, str] = field(default_factory=dict)
    _docs: dict[Path, LocatedDoc] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._jinja = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - renders YAML values, not HTML

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
        return _components(resolved, origins.get(("components",)))


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
            for each_env in [env] if env else self.envs(each_app):
                try:
                    comps = self.components(each_app, each_env)
                except ConfigError as exc:
                    yield exc.problem
                    continue
                for each_comp in comps:
                    if comp is None or comp == each_comp:
                        yield Combo(each_app, each_env, each_comp)

    # -- resolution ---------------------------------------------------------
    def resolve(self, app: str, env: str, comp: str) -> ResolvedVars:
        """Resolve one combo; every problem found is reported (ValidationFailed)."""
        self._check_env(app, env)
        check_name("comp", comp)
        values, origins, files = self._layered(app, env, comp)
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
            settings, problems = _settings(resolved, top_origins, self.layout, app, env, comp)
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
            if path.is_file():
                files.append(path)
                doc = merge(doc, self._load(path))
        cli = {key: parse_scalar(text) for key, text in self.overrides.items()}
        doc = merge(doc, LocatedDoc(cli, {(key,): Origin(CLI_LAYER) for key in cli}))
        builtins = {"app": app, "env": env} | ({"comp": comp} if comp else {})
        for key, value in builtins.items():
            if key in doc.values and doc.values[key] != value:
                raise _error_at(doc.origins[(key,)],
                                f"{key}: is built in ({value!r}) and can't be set")
        doc = merge(doc, LocatedDoc(builtins, {(key,): Origin(BUILTIN_LAYER) for key in builtins}))
        return doc.values, doc.origins, files

    def _load(self, path: Path) -> LocatedDoc:
        if path not in self._docs:
            try:
                self._docs[path] = load_mapping(path.read_text(encoding="utf-8"), path)
            except YamlError as exc:
                raise ConfigError(str(exc), file=path, line=exc.line) from exc
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"can't read: {exc}", file=path) from exc
        return self._docs[path]


class _Resolver:
    """Renders values lazily so one var may use another, as Ansible does."""

    def __init__(
        self, env: jinja2.Environment, raw: Mapping[str, Any], origins: Mapping[KeyPath, Origin]
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
                template = self._env.from_string(f"{{% set result = ({whole['expr']}) %}}")
                run = template.new_context(cast("dict[str, Any]", context), shared=True)
                for _ in template.root_render_func(run):
                    pass
                result = run.vars["result"]
                if isinstance(result, jinja2.Undefined):
                    str(result)  # raises UndefinedError naming what is missing
                return result
            # shared=True: Jinja reads the lazy context instead of copying every var.
            template = self._env.from_string(text)
            run = template.new_context(cast("dict[str, Any]", context), shared=True)
            return "".join(template.root_render_func(run))
        except jinja2.UndefinedError as exc:
            unknown = self._error(path, f"Jinja: {exc.message}")
            raise _Unknown(unknown.message, file=unknown.problem.file,
                           line=unknown.problem.line) from exc
        except jinja2.TemplateSyntaxError as exc:
            raise self._error(path, f"Jinja syntax: {exc.message}") from exc
        except ConfigError:
            raise
        except Exception as exc:
            raise self._error(path, f"Jinja: {exc}") from exc

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


def _error_at(origin: Origin | None, message: str) -> ConfigError:
    """A ConfigError at the file and line a value came from (none for built-in layers)."""
    return ConfigError(message, file=origin.file if origin else None,
                       line=origin.line if origin else None)


# -- the builder keys --------------------------------------------------------


def _where_to_set(layout: Layout, app: str, env: str, comp: str | None) -> str:
    """Ends the message of a missing key: the layer files that could hold it, lowest
    first (an env's `components` only in the env-wide ones: comp=None)."""
    files = [layout.relative(path) for path in layout.layer_files(app, env, comp)]
    return f"set it in {', '.join(files[:-1])} or {files[-1]}"


def _components(value: Any, origin: Origin | None) -> list[str]:
    if value is None:
        raise _error_at(origin, "components: required (the list of comps of this env)")
    if not isinstance(value, list) or not value:
        raise _error_at(origin, "components: must be a non-empty list of comp names")
    for item in value:
        if not isinstance(item, str) or not NAME_RE.fullmatch(item):
            raise _error_at(origin, f"components: {item!r} must match [a-z0-9][a-z0-9-]*")
    return list(value)


def _settings(
    values: Mapping[str, Any],
    origins: Mapping[str, Origin],
    layout: Layout,
    app: str,
    env: str,
    comp: str,
) -> tuple[Settings | None, list[Problem]]:
    """Type-check the keys the tool reads; collect every problem, not just the first."""
    problems: list[Problem] = []
    where_to_set = _where_to_set(layout, app, env, comp)

    def fail(key: str, message: str) -> None:
        problems.append(_error_at(origins.get(key), f"{key}: {message}").problem)

    def text(key: str, *, pattern: re.Pattern[str] | None = None, what: str = "",
             optional: bool = False) -> str:
        value = values.get(key)
        if value is None or value == "":
            if not optional and key in REQUIRED:
                fail(key, f"required; {where_to_set}")
            elif not optional:
                fail(key, "must not be empty")
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int):
            fail(key, f"must be a string, not {type(value).__name__}")
            return ""
        value = str(value)
        if pattern is not None and not pattern.fullmatch(value):
            fail(key, f"{value!r} is not {what}")
        return value

    def number(key: str, minimum: int) -> int:
        value = values.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            fail(key, f"must be a whole number ≥ {minimum}, not {value!r}")
            return minimum
        return value

    components: list[str] = []
    if "components" not in values:
        fail("components", f"required (the list of comps of {app}/{env}); "
                           f"{_where_to_set(layout, app, env, None)}")
    else:
        try:
            components = _components(values.get("components"), origins.get("components"))
        except ConfigError as exc:
            problems.append(exc.problem)
    if components and comp not in components:
        fail("components", f"comp {comp!r} is not in this env's components {components}")

    region = text("aws_region", pattern=_REGION_RE, what="a region like eu-west-1")
    account_value = values.get("aws_account_id")
    if isinstance(account_value, int) and len(str(account_value)) != 12:
        fail("aws_account_id",
             f"{account_value!r} is not 12 digits (quote account ids that start with 0)")
        account = ""
    else:
        account = text("aws_account_id", pattern=_ACCOUNT_RE, what="a 12-digit account id")
    role = text("aws_role_arn", pattern=_ROLE_RE, what="an IAM role ARN", optional=True)
    profile = text("aws_profile", optional=True)
    template = text("packer_template", pattern=NAME_RE, what="a template name under packer/")
    playbook = text("playbook")
    if playbook and (Path(playbook).is_absolute() or ".." in Path(playbook).parts):
        fail("playbook", f"{playbook!r} must be a path inside the infra repo")

    source_ami = text("source_ami", pattern=_AMI_RE, what="an AMI id", optional=True)
    source_filter = _source_filter(values.get("source_ami_filter"), fail)
    if not source_ami and not source_filter:
        fail("source_ami_filter", f"one of source_ami and source_ami_filter is required; "
                                  f"{where_to_set}")
    elif source_ami and source_filter:
        fail("source_ami_filter", "set exactly one of source_ami and source_ami_filter")

    encrypt = values.get("encrypt_boot")
    if not isinstance(encrypt, bool):
        fail("encrypt_boot", f"must be true or false, not {encrypt!r}")
    kms_key_id = text("kms_key_id", optional=True)
    if kms_key_id and not encrypt:
        fail("kms_key_id", "is set but encrypt_boot is false")

    promote_from = text("promote_from", pattern=NAME_RE, what="an env name", optional=True)
    if promote_from:
        if promote_from == env:
            fail("promote_from", "an env can't promote from itself")
        elif promote_from not in layout.envs(app):
            fail("promote_from", f"no env {promote_from!r} in vars/{app}/")

    settings = Settings(
        components=tuple(components),
        aws_region=region,
        aws_account_id=account,
        aws_profile=profile or None,
        aws_role_arn=role or None,
        packer_template=template,
        playbook=playbook,
        source_ami=source_ami or None,
        source_ami_filter=source_filter,
        instance_type=text("instance_type"),
        ssh_source_cidrs=_cidrs(values.get("ssh_source_cidrs"), fail),
        ssh_username=text("ssh_username", pattern=_USER_RE, what="a user name"),
        ami_name=text("ami_name", pattern=_AMI_NAME_RE,
                      what="a valid AMI name (3-100 of letters, digits, ()[] ./'@_-)"),
        encrypt_boot=encrypt is True,
        kms_key_id=kms_key_id,
        launch_template_name=text("launch_template_name"),
        codedeploy_application=text("codedeploy_application"),
        codedeploy_deployment_group=text("codedeploy_deployment_group"),
        promote_from=promote_from or None,
        ami_keep=number("ami_keep", 1),
        rebuild_max_age_days=number("rebuild_max_age_days", 1),
        vault_password_ssm_parameter=text("vault_password_ssm_parameter", optional=True) or None,
    )
    return (None if problems else settings), problems


def _cidrs(value: Any, fail: Callable[[str, str], None]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        fail("ssh_source_cidrs", "must be a non-empty list of CIDR blocks")
        return ()
    for item in value:
        try:
            ipaddress.ip_network(str(item))
        except ValueError:
            fail("ssh_source_cidrs", f"{item!r} is not a CIDR block like 10.0.0.0/8")
            return ()
    return tuple(str(item) for item in value)


def _source_filter(value: Any, fail: Callable[[str, str], None]) -> SourceAmiFilter | None:
    if value is None or value == "":
        return None
    if not isinstance(value, Mapping):
        fail("source_ami_filter", "must be a mapping {owners: [...], name: pattern}")
        return None
    owners, name = value.get("owners"), value.get("name")
    unknown = sorted(set(value) - {"owners", "name"})
    if unknown:
        fail("source_ami_filter", f"unknown keys {unknown} (allowed: owners, name)")
    if not (isinstance(owners, list) and owners and all(isinstance(o, str | int) for o in owners)):
        fail("source_ami_filter", "owners: must be a non-empty list of account ids or aliases")
        return None
    if not isinstance(name, str) or not name:
        fail("source_ami_filter", "name: must be an image name pattern (wildcards * and ?)")
        return None
    return SourceAmiFilter(owners=tuple(str(o) for o in owners), name=name)


def _show(value: Any) -> str:
    if isinstance(value, VaultValue):
        return "(vault)"
    return value if isinstance(value, str) else json.dumps(value, default=_shown)


def _shown(value: Any) -> str:
    """JSON for what plain JSON lacks: `(vault)` for encrypted values, else the text."""
    return "(vault)" if isinstance(value, VaultValue) else str(value)

