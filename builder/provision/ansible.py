"""Ansible: the syntax check, and the playbook runs of a bake through ansible-runner.

Only this module imports ansible_runner. A run gets a private folder (0700, outside the
bake's artifacts, removed afterwards) holding everything ansible-runner and Ansible
write on their own — the run's whole environment in artifacts/<id>/command, events with
full results, facts — plus the inventory, the extra vars (an `-e @file`, never argv)
and the vault password (a 0600 file named by ANSIBLE_VAULT_PASSWORD_FILE). What the bake
keeps is written by builder itself: events as JSON lines with task names, hosts, status
and timing, no results nor output.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import yaml

from builder import private, process, scratch
from builder.config.layout import Layout
from builder.config.source import VaultValue
from builder.errors import Problem, ProvisionFailed
from builder.provision import ansible_cfg, requirements
from builder.provision.ansible_cfg import AnsibleConfig
from builder.provision.tools import tool

Strategy = Literal["mitogen", "linear"]
STRATEGIES: tuple[Strategy, ...] = ("mitogen", "linear")

# ansible-core 2.19 says "Origin: FILE:LINE:COL"; older releases "appears to be in 'FILE': line N".
_LOCATION_RE = re.compile(
    r"(?:Origin: (?P<file>/[^:\s]+):(?P<line>\d+)"
    r"|The error appears to be in '(?P<file_old>[^']+)': line (?P<line_old>\d+))"
)
_UNOPENED_VAULT_RE = re.compile(r"'(?P<file>/[^']+)': Decryption failed")
_ERROR_RE = re.compile(r"^(?:\[ERROR\]|ERROR!):?\s*(?P<message>.+)$", re.MULTILINE)
# Names the run's private task-count file; in every process of the run's environment.
_RUN_MARKER = "BUILDER_TASK_COUNT_FILE"
_PLUGINS_DIR = Path(__file__).resolve().parent / "plugins"
_MASK = "********"
# How often the run checks `cancel` (ansible-runner polls between output reads).
_CANCEL_POLL_S = 0.25
_LEFTOVER_GRACE_S = 0.2  # for what a run left to end on SIGTERM before SIGKILL
# Inherited settings that would send a run's output or secrets elsewhere.
_DROPPED_ENV = ("ANSIBLE_LOG_PATH", "ANSIBLE_KEEP_REMOTE_FILES", "ANSIBLE_DEBUG")


def base_env(layout: Layout, config: AnsibleConfig,
             installed: tuple[Path, Path] | None) -> dict[str, str]:
    """Settings every Ansible run of builder shares, on top of the repo's ansible.cfg
    (see builder.provision.ansible_cfg): its roles path extended with the installed
    requirements, the repo's and the bundled roles, and no cows, retry files or host key
    prompts."""
    env = {"ANSIBLE_NOCOWS": "1"}
    env.update((o.env, o.value) for o in ansible_cfg.run_settings(
        config, layout, callback_dir=_PLUGINS_DIR / "callback", callback="builder_tasks",
        strategy="linear", mitogen_dir=None, private=None, installed=installed))
    return env


def _installed(layout: Layout, config: AnsibleConfig, playbook: Path
               ) -> tuple[Path, Path] | None:
    """The roles and collections of the playbook's requirements.yml, installed (once)."""
    done = requirements.ensure(layout, config, playbook)
    return (done.roles, done.collections) if done is not None else None


def planned_settings(layout: Layout, playbook: Path, strategy: Strategy
                     ) -> tuple[AnsibleConfig, list[ansible_cfg.Override]]:
    """The configuration a bake's run of `playbook` uses and what builder sets on top
    (`validate -v` lists them); the run's private folder shows as `<private>`."""
    config = ansible_cfg.find(layout, playbook)
    mitogen_dir = _mitogen_strategy_dir() if strategy == "mitogen" else None
    planned = requirements.planned(layout, config, playbook)  # nothing installed here
    return config, ansible_cfg.run_settings(
        config, layout, callback_dir=_PLUGINS_DIR / "callback", callback="builder_tasks",
        strategy="mitogen_linear" if mitogen_dir is not None else "linear",
        mitogen_dir=mitogen_dir, private=Path("<private>"),
        installed=(planned.roles, planned.collections) if planned else None)


def syntax_check(layout: Layout, playbook: Path, extravars: Mapping[str, Any], *,
                 vault_password: str | None = None,
                 stand_ins: Sequence[Path] = ()) -> list[Problem]:
    """`ansible-playbook --syntax-check`, each error with its file and line.

    `vault_password` opens the vault files the play loads; `stand_ins` are vault files
    no password opens: the check then runs on a copy of the repo where each of them is
    an empty mapping, so the rest of the play is still checked.
    """
    config = ansible_cfg.find(layout, playbook)
    installed = _installed(layout, config, playbook)
    with tempfile.TemporaryDirectory(prefix=scratch.prefix("syntax")) as tmp:
        root = layout.root
        if stand_ins:
            root = _copy_with_stand_ins(layout.root, Path(tmp) / "repo", stand_ins)
            config = ansible_cfg.find(Layout(root), root / playbook.relative_to(layout.root))
        env = base_env(layout, config, installed)
        vars_file = Path(tmp) / "extravars.json"
        vars_file.write_text(json.dumps(dict(extravars), default=str), encoding="utf-8")
        named = config.vault_password_file()
        if vault_password is not None or (named is not None and not named.exists()):
            # A repo's password file this machine lacks would stop Ansible before the
            # check: a password nothing opens stands in (stand_ins hold the vault files).
            password = vault_password if vault_password is not None else secrets.token_hex(16)
            env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(
                private.write_text(Path(tmp) / "vault-password", password))
        done = process.run(
            [tool("ansible-playbook"), "--syntax-check", "-i", "localhost,",
             "-e", f"@{vars_file}", str(root / playbook.relative_to(layout.root))],
            what="ansible syntax check", cwd=config.folder or root, env=env, check=False,
        )
        output = (done.stderr + done.stdout).replace(str(root), str(layout.root))
    if done.returncode == 0:
        return []
    locked = _UNOPENED_VAULT_RE.search(output)
    if locked:
        return [Problem("vault-encrypted, and the vault password given doesn't open it",
                        Path(locked["file"]).resolve(), 1)]
    where = _LOCATION_RE.search(output)
    found = _ERROR_RE.search(output)
    last = output.strip().splitlines()[-1] if output.strip() else f"exit code {done.returncode}"
    message = found["message"].strip() if found else last
    if where:
        file, line = where["file"] or where["file_old"], where["line"] or where["line_old"]
        return [Problem(f"ansible syntax: {message}", Path(file), int(line))]
    return [Problem(f"ansible syntax: {message}", playbook)]


class _GroupVarsDumper(yaml.SafeDumper):
    """YAML as Ansible reads group_vars, inline `!vault` values kept encrypted."""


_GroupVarsDumper.add_representer(
    VaultValue, lambda dumper, value: dumper.represent_scalar("!vault", value.ciphertext,
                                                             style="|"))


def group_vars_yaml(values: Mapping[str, Any]) -> str:
    """A group_vars file holding `values` (inline vault values still encrypted)."""
    return yaml.dump(dict(values), Dumper=_GroupVarsDumper, sort_keys=True,
                     allow_unicode=True, default_flow_style=False)


def _copy_with_stand_ins(root: Path, copy: Path, stand_ins: Sequence[Path]) -> Path:
    """The repo (without builder's state and git's) with each stand-in an empty mapping."""
    shutil.copytree(root, copy, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", ".builder"))
    for path in stand_ins:
        if path.is_relative_to(root):
            (copy / path.relative_to(root)).write_text("{}\n", encoding="utf-8")
    return copy


@dataclass(frozen=True)
class AnsibleOptions:
    """Options of one bake for the comp's playbook (builder's own runs ignore them):
    `bake --ansible-tags/--ansible-skip-tags/--diff` and the global `-v` count."""

    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    diff: bool = False
    verbosity: int = 0

    def argv(self) -> list[str]:
        """ansible-playbook's options for these (tags as Ansible takes them: a,b)."""
        args = []
        if self.tags:
            args += ["--tags", ",".join(self.tags)]
        if self.skip_tags:
            args += ["--skip-tags", ",".join(self.skip_tags)]
        if self.diff:
            args.append("--diff")
        if self.verbosity:
            args.append("-" + "v" * min(self.verbosity, 4))
        return args

    @property
    def shows_output(self) -> bool:
        """Ansible's own output goes to builder's progress (diffs, verbose results)."""
        return self.diff or self.verbosity > 0

    def fingerprint_part(self) -> dict[str, list[str]]:
        """What changes what runs: tags do (an image baked with a subset of the play is
        another image); diff and verbosity don't."""
        part = {}
        if self.tags:
            part["tags"] = sorted(self.tags)
        if self.skip_tags:
            part["skip_tags"] = sorted(self.skip_tags)
        return part


NO_OPTIONS = AnsibleOptions()


@dataclass(frozen=True)
class SshTarget:
    """Where a playbook runs: direct SSH to the builder instance or the local build host."""

    host: str
    port: int
    user: str
    private_key: Path


@dataclass(frozen=True)
class TaskTiming:
    """How long one task took and how it ended."""

    name: str  # "role : task", as Ansible shows it
    seconds: float
    status: str  # ok | changed | skipped | failed | ignored | unreachable


@dataclass(frozen=True)
class PlaybookRun:
    """One playbook run: its status, strategy, timings and events file."""

    playbook: Path
    status: str  # successful | canceled (a failure raises ProvisionFailed instead)
    strategy: str  # the Ansible strategy that ran: mitogen_linear | linear
    seconds: float
    tasks: tuple[TaskTiming, ...]
    events_file: Path
    # What the playbook handed over with set_stats (not per host): read from the stats
    # event, kept in memory only (the events file never holds it).
    custom_stats: Mapping[str, Any] = field(default_factory=dict)

    @property
    def canceled(self) -> bool:
        return self.status == "canceled"


def run_playbook(
    layout: Layout,
    playbook: Path,
    target: SshTarget,
    extravars: Mapping[str, Any],
    *,
    group_vars: Mapping[str, Any] | None = None,
    options: AnsibleOptions = NO_OPTIONS,
    artifacts_dir: Path,
    vault_password: str | None,
    strategy: Strategy = "mitogen",
    progress: Callable[[str], None],
    cancel: threading.Event,
) -> PlaybookRun:
    """Run one playbook against one host over direct SSH (pipelining on, become by sudo).

    `extravars` go in as extra vars (Ansible's highest precedence); `group_vars` as the
    inventory's group_vars for `all`, after the repo's own (the inventory of its
    ansible.cfg), so play vars, vars_files, role vars and set_fact override them.

    Progress gets "task k/N: name" as tasks start; the events go to
    `artifacts_dir/ansible-<playbook>.jsonl`. A failed task raises ProvisionFailed naming
    the host, the task and its message. When `cancel` is set the run stops and comes back
    with status "canceled" (the caller raises Interrupted). Safe to call from parallel
    threads: each run has its own folder and process, and no signal handler is touched.

    `strategy="mitogen"` runs mitogen's mitogen_linear strategy (several times faster on
    many small tasks) and falls back to `linear`, saying so, when mitogen is missing or
    cannot load with this ansible-core.
    """
    mask = _masker(vault_password)
    mitogen_dir = _mitogen_strategy_dir() if strategy == "mitogen" else None
    if strategy == "mitogen" and mitogen_dir is None:
        progress("mitogen is not installed: using Ansible's linear strategy")
    attempt = _Attempt(layout, ansible_cfg.find(layout, playbook), playbook, target, extravars,
                       dict(group_vars or {}), options, artifacts_dir, vault_password, progress,
                       cancel, mask)
    outcome = attempt.run(mitogen_dir)
    if mitogen_dir is not None and outcome.mitogen_failed():
        progress(f"mitogen cannot run with this ansible-core ({outcome.error_text()}); "
                 "falling back to Ansible's linear strategy "
                 "(set builder_ansible_strategy: linear to skip the attempt)")
        outcome = attempt.run(None)
    if outcome.status not in ("successful", "canceled"):
        raise ProvisionFailed(mask(outcome.failure_message(target)))
    return outcome.result


def _mitogen_strategy_dir() -> Path | None:
    """mitogen's strategy plugins, found without importing them (they import Ansible)."""
    spec = importlib.util.find_spec("ansible_mitogen")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "plugins" / "strategy"
    return folder if (folder / "mitogen_linear.py").is_file() else None


def _masker(secret: str | None) -> Callable[[str], str]:
    """Belt and braces: the vault password never reaches Ansible's output, but if a
    playbook printed it, builder's copies of that output show a mask instead."""
    hidden = (secret or "").strip()

    def mask(text: str) -> str:
        return text.replace(hidden, _MASK) if hidden else text

    return mask


@dataclass(frozen=True)
class _Outcome:
    result: PlaybookRun
    status: str  # ansible-runner's: successful | failed | timeout | canceled
    sink: _EventSink

    def mitogen_failed(self) -> bool:
        """Failed before anything ran on the host, with mitogen named in the error:
        mitogen can't load or connect, and a rerun with `linear` is safe."""
        return (self.status == "failed" and self.sink.host_results == 0
                and "mitogen" in self.error_text().lower())

    def error_text(self) -> str:
        if self.sink.failure is not None:
            return self.sink.failure[2]
        return self.sink.errors[0] if self.sink.errors else f"ansible-runner status {self.status}"

    def failure_message(self, target: SshTarget) -> str:
        """One line (the CLI shows errors on one): where, which task, why."""
        if self.sink.failure is not None:
            host, task, message = self.sink.failure
            text = f"task '{task}' failed on {host}: {message}"
        else:
            text = (f"ansible-playbook {self.result.playbook.name} failed on {target.host}: "
                    f"{self.error_text()}")
        return " ".join(line.strip() for line in text.splitlines() if line.strip())


@dataclass(frozen=True)
class _Attempt:
    """One playbook run, repeatable with another strategy."""

    layout: Layout
    config: AnsibleConfig
    playbook: Path
    target: SshTarget
    extravars: Mapping[str, Any]
    group_vars: Mapping[str, Any]
    options: AnsibleOptions
    artifacts_dir: Path
    vault_password: str | None
    progress: Callable[[str], None]
    cancel: threading.Event
    mask: Callable[[str], str]

    def run(self, mitogen_dir: Path | None) -> _Outcome:
        import ansible_runner

        strategy = "mitogen_linear" if mitogen_dir is not None else "linear"
        private.make_folders(self.artifacts_dir)
        events_file = self.artifacts_dir / f"ansible-{self.playbook.stem}.jsonl"
        started = time.monotonic()
        with _private_dir() as folder, private.open_text(events_file) as events:
            env = self._env(folder, strategy, mitogen_dir)
            inventory = self._inventory(folder / "inventory")
            extra = private.write_text(folder / "extravars.json",
                                       json.dumps(dict(self.extravars), default=str))
            sink = _EventSink(self.progress, events, self.mask, folder / "task-count",
                              show_output=self.options.shows_output)
            try:
                config = ansible_runner.RunnerConfig(
                    private_data_dir=str(folder), playbook=str(self.playbook),
                    inventory=str(inventory), envvars=env,
                    host_cwd=str(self.config.folder or self.layout.root),
                    cmdline=shlex.join(["-e", f"@{extra}", *self.options.argv()]),
                    # No env/ files, no stdout copy, nothing echoed on builder's stdout.
                    suppress_env_files=True, quiet=True,
                    settings={"suppress_output_file": True, "pexpect_timeout": _CANCEL_POLL_S},
                )
                config.prepare()
                config.env = _without_withheld(config.env)
                # A cancel_callback also keeps ansible-runner's own SIGINT/SIGTERM
                # handlers out: interrupts belong to builder.
                runner = ansible_runner.Runner(config, event_handler=sink,
                                               cancel_callback=self.cancel.is_set)
                status, _rc = runner.run()
            except ansible_runner.AnsibleRunnerException as exc:
                raise ProvisionFailed(f"ansible-runner could not run {self.playbook}: "
                                      f"{self.mask(str(exc))}") from exc
            finally:
                _stop_leftovers(f"{_RUN_MARKER}={env[_RUN_MARKER]}")
        result = PlaybookRun(self.playbook, "canceled" if status == "canceled" else "successful",
                             strategy, time.monotonic() - started, sink.timings(), events_file,
                             sink.custom_stats)
        return _Outcome(result, str(status), sink)

    def _env(self, folder: Path, strategy: str, mitogen_dir: Path | None) -> dict[str, str]:
        ansible_playbook = tool("ansible-playbook")
        env = {
            "ANSIBLE_NOCOWS": "1",
            # ansible-runner starts `ansible-playbook` by name.
            "PATH": os.pathsep.join([str(Path(ansible_playbook).parent),
                                     os.environ.get("PATH", os.defpath)]),
            _RUN_MARKER: str(folder / "task-count"),
        }
        env.update((o.env, o.value) for o in ansible_cfg.run_settings(
            self.config, self.layout, callback_dir=_PLUGINS_DIR / "callback",
            callback="builder_tasks", strategy=strategy, mitogen_dir=mitogen_dir,
            private=folder, installed=_installed(self.layout, self.config, self.playbook)))
        if self.vault_password is not None:
            password = private.write_text(folder / "vault-password", self.vault_password)
            env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(password)
        elif (named := self.config.vault_password_file()) is not None and not named.exists():
            # The repo names a password file this machine lacks: Ansible would stop before
            # the first task even when nothing is encrypted. A password nothing opens keeps
            # it going; an encrypted file then fails to decrypt, naming itself.
            placeholder = private.write_text(folder / "vault-password", secrets.token_hex(16))
            env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(placeholder)
        return env

    def _inventory(self, folder: Path) -> Path:
        """The run's inventory: the one host, and group_vars/all holding the repo's
        inventory vars for `all` (lowest first) and then builder's group vars."""
        all_vars = folder / "group_vars" / "all"
        all_vars.mkdir(parents=True, mode=0o700)
        private.write_text(folder / "hosts.json", json.dumps(_inventory(self.target)))
        # Ansible loads a group_vars folder's files in name order; later ones win.
        for number, path in enumerate(self.config.inventory_all_vars()):
            (all_vars / f"{number:03d}-{path.name}").symlink_to(path)
        private.write_text(all_vars / "zzz-builder.yml", group_vars_yaml(self.group_vars))
        return folder


@contextlib.contextmanager
def _private_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=scratch.prefix("ansible")))  # 0700
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _inventory(target: SshTarget) -> dict[str, Any]:
    host = {
        "ansible_host": target.host,
        "ansible_port": target.port,
        "ansible_user": target.user,
        "ansible_ssh_private_key_file": str(target.private_key),
        # A fresh host key every bake: never checked, never recorded in known_hosts.
        "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null "
                                   "-o StrictHostKeyChecking=no -o IdentitiesOnly=yes",
    }
    return {"all": {"hosts": {target.host: host}}}


def _without_withheld(env: Mapping[str, str]) -> dict[str, str]:
    """ansible-runner seeds the run's environment with builder's own: keep out what
    builder.process keeps from every child (cloud credentials, vault passwords)."""
    passed_on = process.child_env()
    return {key: value for key, value in env.items()
            if (key in passed_on or key not in os.environ) and key not in _DROPPED_ENV}


def _stop_leftovers(marker: str) -> None:
    """Stop what a run leaves running: ssh's ControlPersist masters, and after a cancel
    mitogen's mux process (it runs in a session of its own, out of ansible-runner's reach).
    Every one of them inherited the run's environment, which names its private folder."""
    needle = marker.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    process.stop(*found, grace_s=_LEFTOVER_GRACE_S)


_RESULT_EVENTS = {"runner_on_ok": "ok", "runner_on_failed": "failed",
                  "runner_on_skipped": "skipped", "runner_on_unreachable": "unreachable"}
_RECORDED_FIELDS = ("play", "task", "role", "host", "duration")


class _EventSink:
    """ansible-runner's event handler: progress lines, task timings, the failure, and
    the bake's events file — JSON lines of task names, hosts, status and timing only:
    no result, no output, no message (so nothing a `no_log` task handles, nor anything a
    task registers, is ever saved)."""

    def __init__(self, progress: Callable[[str], None], out: IO[str],
                 mask: Callable[[str], str], count_file: Path, *, show_output: bool = False):
        self._progress = progress
        self._show_output = show_output
        self._out = out
        self._mask = mask
        self._count_file = count_file
        self._planned = 0
        self._started = 0
        self._timings: dict[str, TaskTiming] = {}
        self.host_results = 0
        self.failure: tuple[str, str, str] | None = None  # host, task, message
        self.errors: list[str] = []
        self.custom_stats: dict[str, Any] = {}

    def __call__(self, event: Mapping[str, Any]) -> bool:
        kind = str(event.get("event", ""))
        data: Mapping[str, Any] = event.get("event_data") or {}
        record: dict[str, Any] = {"counter": event.get("counter"), "event": kind,
                                  "created": event.get("created")}
        record |= {key: data[key] for key in _RECORDED_FIELDS if data.get(key) not in (None, "")}
        if kind == "playbook_on_task_start":
            self._started += 1
            total = max(self._planned_tasks(), self._started)
            self._progress(self._mask(f"task {self._started}/{total}: {_task_name(data)}"))
        elif kind == "playbook_on_handler_task_start":
            self._progress(self._mask(f"handler: {_task_name(data)}"))
        elif kind in _RESULT_EVENTS:
            record |= self._result(kind, data)
        elif kind == "playbook_on_stats":
            self.custom_stats.update(data.get("artifact_data") or {})
        # Ansible's output of an event shows results (a debug task's value, a failed
        # task's stderr, everything at -v): read here, never saved.
        stdout = str(event.get("stdout") or "")
        if stdout:
            if self._show_output:
                for line in stdout.splitlines():
                    if line.strip():
                        self._progress(self._mask(line))
            self.errors.extend(m["message"].strip() for m in _ERROR_RE.finditer(stdout))
        masked = {k: self._mask(v) if isinstance(v, str) else v for k, v in record.items()}
        self._out.write(json.dumps(masked, default=str) + "\n")
        return False  # ansible-runner keeps no copy with the full results

    def timings(self) -> tuple[TaskTiming, ...]:
        return tuple(self._timings.values())

    def _planned_tasks(self) -> int:
        if not self._planned:
            with contextlib.suppress(OSError, ValueError):
                self._planned = int(self._count_file.read_text(encoding="utf-8"))
        return self._planned

    def _result(self, kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
        self.host_results += 1
        result: Mapping[str, Any] = data.get("res") or {}
        status = _RESULT_EVENTS[kind]
        if status == "ok" and result.get("changed"):
            status = "changed"
        if status == "failed" and data.get("ignore_errors"):
            status = "ignored"
        name = _task_name(data)
        seconds = float(data.get("duration") or 0.0)
        key = str(data.get("task_uuid") or name)
        earlier = self._timings.get(key)
        self._timings[key] = TaskTiming(name, max(seconds, earlier.seconds if earlier else 0.0),
                                        status)
        if status in ("failed", "unreachable"):
            # The message goes to the error builder raises, not to the events file: it
            # comes from the result (a command's stderr can hold anything).
            self.failure = (str(data.get("host", "?")), name,
                            self._mask(_failure_message(result)))
        return {"status": status}


def _task_name(data: Mapping[str, Any]) -> str:
    task = str(data.get("task") or data.get("task_action") or "?")
    role = data.get("role")
    return f"{role} : {task}" if role else task


def _failure_message(result: Mapping[str, Any]) -> str:
    """The one line that says why a task failed (a loop: its first failed item)."""
    for item in result.get("results") or []:
        if isinstance(item, Mapping) and item.get("failed"):
            return _failure_message(item)
    message = str(result.get("msg") or result.get("censored") or "").strip()
    detail = str(result.get("stderr") or result.get("module_stderr") or "").strip()
    if detail and (not message or message.startswith(("non-zero return code", "MODULE FAILURE"))):
        last = detail.splitlines()[-1]
        message = f"{message.splitlines()[0]}: {last}" if message else last
    return message or "failed"
