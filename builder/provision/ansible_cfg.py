"""The infra repo's own Ansible configuration, and what builder adds to it.

Ansible reads one `ansible.cfg`: the file `ANSIBLE_CONFIG` names, else the one in the
folder it runs from. builder runs a playbook as `ansible-playbook` run from the nearest
folder holding an `ansible.cfg`, from the playbook's folder up to the repo's root (or
from `ANSIBLE_CONFIG`), and names that file in `ANSIBLE_CONFIG` so nothing else is read.

Everything the file sets applies. builder's own settings go on top as environment
variables (Ansible ranks them above the file), and only where it must:

- lists are extended, never replaced: the bundled roles come after the user's
  `roles_path` (a user's role of the same name wins), builder's callback and mitogen's
  strategy plugins after the user's folders, its callback after the user's callbacks;
- what direct SSH to a fresh instance and builder's reading of the run need is set
  (strategy, host keys, private temp and control folders, colour, no target syslog,
  no retry files);
- a few speed-ups apply only where the file says nothing (pipelining, interpreter,
  become method).

`overrides()` lists each of them; `validate -v` shows the list.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from builder.config.layout import Layout
from builder.errors import ConfigError

CONFIG_ENV = "ANSIBLE_CONFIG"
FILE_NAME = "ansible.cfg"


@dataclass(frozen=True)
class _Setting:
    """One Ansible setting: where the ini file and the environment hold it."""

    env: str
    keys: tuple[tuple[str, str], ...]  # (section, key), the first one set wins


ROLES_PATH = _Setting("ANSIBLE_ROLES_PATH", (("defaults", "roles_path"),))
COLLECTIONS_PATH = _Setting("ANSIBLE_COLLECTIONS_PATH", (
    ("defaults", "collections_path"), ("defaults", "collections_paths")))
LIBRARY = _Setting("ANSIBLE_LIBRARY", (("defaults", "library"),))
MODULE_UTILS = _Setting("ANSIBLE_MODULE_UTILS", (("defaults", "module_utils"),))
FILTER_PLUGINS = _Setting("ANSIBLE_FILTER_PLUGINS", (("defaults", "filter_plugins"),))
LOOKUP_PLUGINS = _Setting("ANSIBLE_LOOKUP_PLUGINS", (("defaults", "lookup_plugins"),))
TEST_PLUGINS = _Setting("ANSIBLE_TEST_PLUGINS", (("defaults", "test_plugins"),))
ACTION_PLUGINS = _Setting("ANSIBLE_ACTION_PLUGINS", (("defaults", "action_plugins"),))
VARS_PLUGINS = _Setting("ANSIBLE_VARS_PLUGINS", (("defaults", "vars_plugins"),))
CALLBACK_PLUGINS = _Setting("ANSIBLE_CALLBACK_PLUGINS", (("defaults", "callback_plugins"),))
STRATEGY_PLUGINS = _Setting("ANSIBLE_STRATEGY_PLUGINS", (("defaults", "strategy_plugins"),))
CALLBACKS_ENABLED = _Setting("ANSIBLE_CALLBACKS_ENABLED", (
    ("defaults", "callbacks_enabled"), ("defaults", "callback_whitelist")))
INVENTORY = _Setting("ANSIBLE_INVENTORY", (("defaults", "inventory"), ("defaults", "hostfile")))
VAULT_PASSWORD_FILE = _Setting("ANSIBLE_VAULT_PASSWORD_FILE",
                               (("defaults", "vault_password_file"),))
PIPELINING = _Setting("ANSIBLE_PIPELINING", (
    ("connection", "pipelining"), ("ssh_connection", "pipelining"), ("defaults", "pipelining")))
INTERPRETER = _Setting("ANSIBLE_PYTHON_INTERPRETER", (("defaults", "interpreter_python"),))
BECOME_METHOD = _Setting("ANSIBLE_BECOME_METHOD", (("privilege_escalation", "become_method"),))

# The folders a play's code comes from: fingerprint inputs when the file names them.
CODE_FOLDERS = (LIBRARY, MODULE_UTILS, FILTER_PLUGINS, LOOKUP_PLUGINS, TEST_PLUGINS,
                ACTION_PLUGINS, VARS_PLUGINS, CALLBACK_PLUGINS, STRATEGY_PLUGINS)

_DEFAULT_COLLECTIONS_PATH = ("~/.ansible/collections", "/usr/share/ansible/collections")
# Ansible's own defaults for where the user's extra plugins live (beside the config).
_DEFAULT_DIRS = {LIBRARY: "library", MODULE_UTILS: "module_utils",
                 FILTER_PLUGINS: "filter_plugins", LOOKUP_PLUGINS: "lookup_plugins"}


@dataclass(frozen=True)
class Override:
    """One setting builder gives Ansible on top of the repo's configuration."""

    env: str
    value: str
    why: str

    def show(self) -> str:
        return f"{self.env}={self.value} — {self.why}"


@dataclass(frozen=True)
class AnsibleConfig:
    """The `ansible.cfg` a playbook runs with (none: Ansible's defaults), as builder
    reads it: values from the environment first, as Ansible ranks them."""

    path: Path | None
    values: Mapping[tuple[str, str], str]

    @property
    def folder(self) -> Path | None:
        """Where `ansible-playbook` would run from (relative settings start here)."""
        return self.path.parent if self.path is not None else None

    def raw(self, setting: _Setting) -> str | None:
        """The setting's text: the environment's, else the file's, else None."""
        if os.environ.get(setting.env):
            return os.environ[setting.env]
        for key in setting.keys:
            if key in self.values:
                return self.values[key]
        return None

    def is_set(self, setting: _Setting) -> bool:
        return self.raw(setting) is not None

    def paths(self, setting: _Setting) -> list[Path]:
        """A path list setting, each entry absolute (relative ones start at the file's
        folder, as Ansible resolves them; `~` expanded)."""
        text = self.raw(setting)
        if text is None:
            return []
        base = self.folder or Path.cwd()
        found = []
        for entry in text.split(os.pathsep if setting is not INVENTORY else ","):
            if entry.strip():
                path = Path(os.path.expandvars(entry.strip())).expanduser()
                found.append(path if path.is_absolute() else (base / path).resolve())
        return found

    def names(self, setting: _Setting) -> list[str]:
        """A comma-separated list setting (callbacks)."""
        return [n.strip() for n in (self.raw(setting) or "").split(",") if n.strip()]

    def code_folders(self) -> list[Path]:
        """The plugin, library and module_utils folders Ansible loads code from: those
        the file names, and the default ones beside the file when they exist."""
        found: list[Path] = []
        for setting in CODE_FOLDERS:
            named = self.paths(setting)
            if not named and self.folder is not None and setting in _DEFAULT_DIRS:
                named = [self.folder / _DEFAULT_DIRS[setting]]
            found.extend(p for p in named if p.is_dir() and p not in found)
        return found

    def inventory_all_vars(self) -> list[Path]:
        """The user's inventory vars for group `all`: `group_vars/all` (a file with a
        YAML/JSON extension or a folder of them) beside each inventory source."""
        found: list[Path] = []
        for source in self.paths(INVENTORY):
            base = source if source.is_dir() else source.parent
            for candidate in (base / "group_vars" / "all", *(
                    base / "group_vars" / f"all{ext}" for ext in (".yml", ".yaml", ".json"))):
                if candidate.is_dir():
                    found.extend(sorted(p for p in candidate.rglob("*")
                                        if p.is_file() and not p.name.startswith(".")))
                elif candidate.is_file():
                    found.append(candidate)
        return found

    def vault_password_file(self) -> Path | None:
        paths = self.paths(VAULT_PASSWORD_FILE)
        return paths[0] if paths else None


def find(layout: Layout, playbook: Path) -> AnsibleConfig:
    """The configuration `ansible-playbook` would read for this playbook: the file
    `ANSIBLE_CONFIG` names, else the nearest `ansible.cfg` from the playbook's folder
    up to the repo's root; none when there is none."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        path = path / FILE_NAME if path.is_dir() else path
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}={named}: no such file")
        return _read(path.resolve())
    root = layout.root.resolve()
    folder = playbook.resolve().parent
    while folder.is_relative_to(root):
        if (folder / FILE_NAME).is_file():
            return _read(folder / FILE_NAME)
        if folder == root:
            break
        folder = folder.parent
    return AnsibleConfig(None, {})


def _read(path: Path) -> AnsibleConfig:
    # Ansible's own reading: ';' starts an inline comment, values are taken raw.
    parser = configparser.ConfigParser(inline_comment_prefixes=(";",), interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise ConfigError(f"can't read Ansible's configuration: {exc}".splitlines()[0],
                          file=path, line=line) from exc
    values = {(section, key): _unquote(value) for section in parser.sections()
              for key, value in parser.items(section, raw=True)}
    return AnsibleConfig(path, values)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def run_settings(
    config: AnsibleConfig,
    layout: Layout,
    *,
    callback_dir: Path,
    callback: str,
    strategy: str,
    mitogen_dir: Path | None,
    private: Path | None,
    installed: tuple[Path, Path] | None = None,
) -> list[Override]:
    """What builder sets for one run, on top of `config`, each with why.

    `private`: the run's private folder (None for a syntax check, which connects nowhere).
    `installed`: the roles and collections folders of the repo's requirements.yml.
    """
    found: list[Override] = []

    def add(env: str, value: str, why: str) -> None:
        found.append(Override(env, value, why))

    def extend(setting: _Setting, extra: Iterable[Path], why: str) -> None:
        own = [str(p) for p in config.paths(setting)]
        add(setting.env, os.pathsep.join(_unique([*own, *(str(p) for p in extra)])), why)

    if config.path is not None:
        add(CONFIG_ENV, str(config.path), "the repo's Ansible configuration")
    extend(ROLES_PATH, [*([installed[0]] if installed else []), *layout.roles_dirs()],
           "requirements.yml's roles, playbooks/roles and builder's bundled roles appended "
           "(the repo's roles_path comes first: its role of a name wins)")
    if installed is not None:
        own = config.paths(COLLECTIONS_PATH) or [
            Path(p).expanduser() for p in _DEFAULT_COLLECTIONS_PATH]
        add(COLLECTIONS_PATH.env, os.pathsep.join(_unique([*(str(p) for p in own),
                                                           str(installed[1])])),
            "requirements.yml's collections appended (the repo's come first)")
    add("ANSIBLE_HOST_KEY_CHECKING", "0", "a fresh instance every bake: no host key to know")
    add("ANSIBLE_RETRY_FILES_ENABLED", "0", "no .retry files in the repo")
    add("ANSIBLE_FORCE_COLOR", "0", "builder reads Ansible's output")
    if private is None:
        return found
    extend(CALLBACK_PLUGINS, [callback_dir], "builder's progress callback appended")
    add(CALLBACKS_ENABLED.env, ",".join(_unique([*config.names(CALLBACKS_ENABLED), callback])),
        "builder's progress callback enabled beside the repo's")
    add("ANSIBLE_STRATEGY", strategy, "builder_ansible_strategy")
    if mitogen_dir is not None:
        extend(STRATEGY_PLUGINS, [mitogen_dir], "mitogen's strategy appended")
    add("ANSIBLE_NOCOLOR", "1", "builder reads Ansible's output")
    add("ANSIBLE_NO_TARGET_SYSLOG", "1", "module calls stay out of the image's journal")
    add("ANSIBLE_LOCAL_TEMP", str(private / "tmp"), "the run's private folder, removed after")
    add("ANSIBLE_SSH_CONTROL_PATH_DIR", str(private / "cp"),
        "the run's private folder; builder stops what is left in it")
    for setting, value, why in (
            (PIPELINING, "1", "fewer SSH round trips (not set in the repo)"),
            # Where Ubuntu and Debian keep it; discovery would cost a round trip per run.
            (INTERPRETER, "/usr/bin/python3", "Ubuntu's and Debian's (not set in the repo)"),
            (BECOME_METHOD, "sudo", "the builder instance's (not set in the repo)")):
        if not config.is_set(setting):
            add(setting.env, value, why)
    return found


def _unique(items: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
