"""The fingerprint of a bake: one hash of every input that shapes the image.

Inputs: the rendered template and its config-derived Packer vars, the playbook with
every file and role it uses (roles' own dependencies and include/import_role
included, found along the repo's roles_path), the tool's own provisioning (hygiene and
checks), every resolved var (what Ansible gets; a comment-only change to a vars file
changes nothing), and the resolved source AMI id. Also what Ansible reads besides:
every vars_files/include_vars file the play reaches with the combo's vars (a templated
path rendered with them; one they can't render — a fact, a loop var — stands for every
file in the folder it points into), the ansible.cfg the run uses and the plugin,
library and module_utils folders it names, the group_vars/host_vars beside the
playbook and the inventory, and every vault-encrypted file of the app's vars folders
(by content, whatever its name). A bake whose fingerprint matches an available AMI is
skipped.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox

from builder.config.layers import ResolvedVars
from builder.config.layout import Layout
from builder.config.source import YamlError, safe_load
from builder.provision import ansible_cfg, requirements
from builder.render.template import Rendered

_ROLE_TASK_KEYS = ("include_role", "import_role", "ansible.builtin.include_role",
                   "ansible.builtin.import_role")
_FILE_TASK_KEYS = ("include_tasks", "import_tasks", "ansible.builtin.include_tasks",
                   "ansible.builtin.import_tasks", "import_playbook",
                   "ansible.builtin.import_playbook", "include_vars",
                   "ansible.builtin.include_vars")
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_BLOCK_KEYS = ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always")
_VAULT_HEADER = b"$ANSIBLE_VAULT;"
# Renders templated vars_files paths the way Ansible would with the combo's vars; a
# name only Ansible knows (a fact) is an error here, and then the folder counts.
_JINJA = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined,
                                             autoescape=False)


@dataclass(frozen=True)
class Fingerprint:
    """The hash of every input of a bake, and the inputs themselves (so `rebuild` can
    name what changed)."""

    value: str
    inputs: Mapping[str, Any]  # what was hashed, per part (saved with the build)


@dataclass
class FileCache:
    """What one command learns about files: which ones a playbook uses and their digests.

    Files don't change while a command runs, and `rebuild` fingerprints hundreds of
    combos that share a few playbooks and roles.
    """

    walks: dict[Path, _Walk] = field(default_factory=dict)
    digests: dict[Path, str] = field(default_factory=dict)
    labels: dict[tuple[Path, Path], str] = field(default_factory=dict)  # (root, path)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def playbook_files(self, layout: Layout, playbook: Path) -> _Walk:
        with self._lock:
            if playbook not in self.walks:
                self.walks[playbook] = _playbook_files(layout, playbook)
            return self.walks[playbook]

    def digest(self, path: Path) -> str:
        with self._lock:
            if path not in self.digests:
                self.digests[path] = _file_digest(path)
            return self.digests[path]

    def label(self, layout: Layout, path: Path) -> str:
        key = (layout.root, path)
        with self._lock:
            if key not in self.labels:
                self.labels[key] = _label(layout, path)
            return self.labels[key]


def compute(layout: Layout, resolved: ResolvedVars, rendered: Rendered, source_ami: str,
            tool_files: Iterable[Path] = (), cache: FileCache | None = None,
            ansible_run: Mapping[str, Any] | None = None) -> Fingerprint:
    """Fingerprint one combo: template, Packer vars, playbook files and roles (and what
    Ansible reads besides: vars_files, ansible.cfg, plugins, group_vars), the tool's own
    files, vars, vault files and the base image. `ansible_run`: what of the bake's Ansible
    options changes what runs (tags)."""
    cache = cache or FileCache()
    walk = cache.playbook_files(layout, resolved.playbook_path)
    # A playbook's vars_files that are config layers of this combo count through the
    # resolved vars (Ansible gets each of their values), not as text.
    files = ((walk.files | walk.rendered(resolved.values) | set(tool_files))
             - {layer.resolve() for layer in resolved.files})
    inputs = {
        "template": rendered.digest(),
        "files": {cache.label(layout, path): cache.digest(path) for path in sorted(files)},
        "vars": _digest(json.dumps(dict(resolved.values), sort_keys=True, default=str)),
        "vault": {cache.label(layout, path): cache.digest(path)
                  for path in _vault_files(layout, resolved)},
        "source_ami": source_ami,
    }
    if ansible_run:  # absent otherwise: fingerprints of plain bakes stay as they were
        inputs["ansible"] = dict(ansible_run)
    value = _digest(json.dumps(inputs, sort_keys=True))
    return Fingerprint(value, inputs)


# What says where an env is or how its bake runs, not what its image holds: builder's
# keys of that kind and the bundled template's networking and spot variables. A bake in
# another env from "the same inputs" (`promote_by: rebake`) compares every var but these.
ENV_VARS = frozenset({
    "env", "components", "aws_region", "aws_account_id", "aws_profile", "aws_role_arn",
    "source_ami", "instance_type", "ssh_source_cidrs", "ami_name", "encrypt_boot",
    "kms_key_id", "launch_template_name", "codedeploy_application",
    "codedeploy_deployment_group", "deploy_strategy", "promote_from", "promote_by",
    "rebake_env_vars", "ami_keep", "rebuild_max_age_days", "vault_password_ssm_parameter",
    "subnet_id", "subnet_filter", "vpc_filter", "iam_instance_profile",
    "associate_public_ip_address", "ssh_interface", "spot_price", "spot_instance_types",
    "ami_ssm_parameter", "protect_released", "ami_deprecate_after_days",
    "ami_keep_launched_days", "records_bucket", "aws_regions", "auto_scaling_group",
    "refresh_min_healthy_percent", "refresh_checkpoints", "refresh_alarms", "asg_pair"})


def build_inputs(layout: Layout, resolved: ResolvedVars, rendered: Rendered,
                 fingerprint: Fingerprint, env_vars: Iterable[str] = ()) -> dict[str, Any]:
    """The inputs of a bake that make its image whatever env bakes it, to compare two
    envs' bakes part by part: the rendered template text, every file hashed (playbook,
    roles, builder's own), the app's common vault files, the Ansible options, and each
    var but `ENV_VARS` and `env_vars` (the target's `rebake_env_vars`); of
    `source_ami_filter`, the name pattern (image owners differ between partitions).
    The base image id is left out: each region has its own."""
    common = _label(layout, layout.vars_dir / resolved.combo.app / "common") + "/"
    values = {name: (value.get("name") if name == "source_ami_filter"
                     and isinstance(value, Mapping) else value)
              for name, value in resolved.values.items()
              if name not in ENV_VARS and name not in set(env_vars)}
    return {
        "template": _digest(rendered.hcl),
        "files": dict(fingerprint.inputs["files"]),
        "vault": {label: digest for label, digest in fingerprint.inputs["vault"].items()
                  if label.startswith(common)},
        "vars": {name: _digest(json.dumps(value, sort_keys=True, default=str))
                 for name, value in sorted(values.items())},
        "ansible": fingerprint.inputs.get("ansible"),
    }


def changed_parts(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two fingerprints' inputs, in words ("role base", "vars";
    "var NAME" where the vars are given one by one, as in `build_inputs`)."""
    changes: list[str] = []
    for part in ("template", "vars", "source_ami", "ansible"):
        before, after = old.get(part), new.get(part)
        if part == "vars" and isinstance(before, dict) and isinstance(after, dict):
            changes.extend(f"var {name}" for name in sorted(set(before) | set(after))
                           if before.get(name) != after.get(name))
        elif before != after:
            changes.append(part)
    for part in ("files", "vault"):
        before, after = old.get(part, {}), new.get(part, {})
        changes.extend(name for name in sorted(set(before) | set(after))
                       if before.get(name) != after.get(name))
    return changes


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def _label(layout: Layout, path: Path) -> str:
    """A name for a hashed file that doesn't depend on where builder is installed."""
    # Bundled playbooks keep the label they had before the package was split into
    # folders, so upgrading builder does not change every fingerprint.
    for base, prefix in ((_PACKAGE_DIR / "provision", "<builder>/"), (_PACKAGE_DIR, "<builder>/"),
                         (layout.root, ""),
                         (layout.bundled, "<bundled>/")):
        if path.is_relative_to(base):
            return prefix + str(path.relative_to(base))
    return str(path)


def _vault_files(layout: Layout, resolved: ResolvedVars) -> list[Path]:
    """The app's vault files in its common and env folders: `*.vault.yml`, and any
    other file there that is vault-encrypted (known by its header, not its name)."""
    combo = resolved.combo
    folders = [layout.vars_dir / combo.app / "common", layout.vars_dir / combo.app / combo.env]
    return sorted(p for folder in folders if folder.is_dir() for p in folder.rglob("*")
                  if p.is_file() and (p.name.endswith(".vault.yml") or is_vault_encrypted(p)))


def is_vault_encrypted(path: Path) -> bool:
    """An ansible-vault encrypted file: its first bytes are the vault header."""
    try:
        with path.open("rb") as handle:
            return handle.read(len(_VAULT_HEADER)) == _VAULT_HEADER
    except OSError:
        return False


@dataclass(frozen=True)
class VarsFilesEntry:
    """One `vars_files` entry: the file naming it and its candidates (a list entry means
    the first that exists), paths as written, relative to that file's folder."""

    referrer: Path
    candidates: tuple[str, ...]


@dataclass(frozen=True)
class _Walk:
    """What a playbook reads whatever the vars (`files`), the vars files it names by a
    template (`templated`: the folder a path starts from, the path as written), every
    vars_files entry, and the roles it names that no roles path holds (with the file
    naming each)."""

    files: frozenset[Path]
    templated: frozenset[tuple[Path, str]]
    vars_files: tuple[VarsFilesEntry, ...]
    missing_roles: tuple[tuple[str, Path], ...]

    def rendered(self, values: Mapping[str, Any]) -> set[Path]:
        """The templated vars files these vars reach; for a path they can't render
        (a fact, a loop var), every file of the folder it points into."""
        found: set[Path] = set()
        for base, template in sorted(self.templated):
            path = render_path(base, template, values)
            if path is not None:
                found.add(path)
                continue
            prefix = template.split("{", 1)[0]
            static = Path(prefix)
            folder = (base / (static if prefix.endswith("/") else static.parent)).resolve()
            if folder.is_dir():
                found.update(p for p in folder.rglob("*") if p.is_file())
        return found


def render_path(base: Path, template: str, values: Mapping[str, Any]) -> Path | None:
    """A templated path rendered with the combo's vars, from `base`; None when they
    can't render it (a fact, a loop var, one of Ansible's own filters)."""
    try:
        return (base / _JINJA.from_string(template).render(values)).resolve()
    except Exception:  # any failure to render means "known only to Ansible at run time"
        return None


def _playbook_files(layout: Layout, playbook: Path) -> _Walk:
    """The playbook, the files it includes, every file of every role it uses, and what
    Ansible reads around it: ansible.cfg, the code folders it names, group_vars and
    host_vars beside the playbook and the inventory."""
    config = ansible_cfg.find(layout, playbook)
    roles_path = [playbook.parent / "roles", *config.paths(ansible_cfg.ROLES_PATH),
                  *layout.roles_dirs()]
    walker = _Walker()
    walker.yaml_file(playbook)
    done: set[str] = set()
    missing: list[tuple[str, Path]] = []
    while set(walker.roles) - done:
        name = min(set(walker.roles) - done)
        done.add(name)
        folder = next((base / name for base in roles_path if (base / name).is_dir()), None)
        if folder is None:
            # Two dots: a collection's role, looked up in the collections path by Ansible.
            if name.count(".") < 2:
                missing.append((name, walker.roles[name]))
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            walker.files.add(path)
            if path.suffix in (".yml", ".yaml"):
                walker.yaml_file(path, walk=False)
        meta_file = folder / "meta" / "main.yml"
        meta = _load(meta_file)
        if isinstance(meta, dict):
            walker.add_roles(_role_names(meta.get("dependencies") or []), meta_file)
    around = [*config.code_folders(), playbook.parent / "group_vars",
              playbook.parent / "host_vars"]
    for source in config.paths(ansible_cfg.INVENTORY):
        base = source if source.is_dir() else source.parent
        around += [base / "group_vars", base / "host_vars"]
    for folder in around:
        if folder.is_dir():
            walker.files.update(p for p in folder.rglob("*")
                                if p.is_file() and "__pycache__" not in p.parts)
    if config.path is not None:
        walker.files.add(config.path)
    walker.files.update(requirements.files(layout, config, playbook))
    return _Walk(frozenset(walker.files), frozenset(walker.templated),
                 tuple(walker.vars_files), tuple(missing))


class _Walker:
    """Follows a playbook's YAML: included files, roles named, vars files."""

    def __init__(self) -> None:
        self.files: set[Path] = set()
        self.templated: set[tuple[Path, str]] = set()
        self.roles: dict[str, Path] = {}  # name -> the first file naming it
        self.vars_files: list[VarsFilesEntry] = []
        self._seen: set[Path] = set()

    def add_roles(self, names: Iterable[str], referrer: Path) -> None:
        for name in names:
            self.roles.setdefault(name, referrer)

    def yaml_file(self, path: Path, *, walk: bool = True) -> None:
        """Read one playbook or task file (`walk`: also count it as a file read)."""
        if path in self._seen or not path.is_file():
            return
        self._seen.add(path)
        if walk:
            self.files.add(path)
        for item in _items(_load(path)):
            self.add_roles(_role_names(item.get("roles") or []), path)
            for key in _ROLE_TASK_KEYS:
                value = item.get(key)
                if isinstance(value, dict) and isinstance(value.get("name"), str):
                    self.add_roles([value["name"]], path)
                elif isinstance(value, str):
                    self.add_roles([value], path)
            for key in _FILE_TASK_KEYS:
                self._included(path, item.get(key))
            for entry in item.get("vars_files") or []:
                # A list entry is "the first of these that exists": each may be the one.
                candidates = [c for c in (entry if isinstance(entry, list) else [entry])
                              if isinstance(c, str)]
                self.vars_files.append(VarsFilesEntry(path, tuple(candidates)))
                for vars_file in candidates:
                    if _is_template(vars_file):
                        self.templated.add((path.parent, vars_file))
                    else:
                        self.files.add((path.parent / vars_file).resolve())

    def _included(self, path: Path, value: Any) -> None:
        if isinstance(value, dict):
            value = value.get("file") or value.get("dir")
        if not isinstance(value, str):
            return
        if _is_template(value):
            self.templated.add((path.parent, value))
            return
        target = (path.parent / value).resolve()
        if target.is_dir():  # include_vars dir=
            self.files.update(p for p in target.rglob("*") if p.is_file())
        else:
            self.yaml_file(target)


def _is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def _items(document: Any) -> Iterator[dict[str, Any]]:
    """Every play and task mapping in a playbook or task file, blocks flattened."""
    if isinstance(document, list):
        for item in document:
            yield from _items(item)
    elif isinstance(document, dict):
        yield document
        for key in _BLOCK_KEYS:
            yield from _items(document.get(key))


def _role_names(entries: Iterable[Any]) -> set[str]:
    names = set()
    for entry in entries:
        name = entry if isinstance(entry, str) else (
            (entry.get("role") or entry.get("name")) if isinstance(entry, dict) else None)
        if isinstance(name, str) and "{{" not in name:
            names.add(name)
    return names


def _load(path: Path) -> Any:
    try:
        return safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (YamlError, UnicodeDecodeError):
        # Templates and non-YAML files are hashed, not walked (a YAML bomb
        # or a 5,000-deep document included: hashing reads it without expanding it).
        return None
