"""The provisioning of one bake, over direct SSH to the builder instance:

1. the comp's playbook (`playbook`, by default playbooks/<app>/packer-<comp>.yml), with
   builder's own keys, `app`, `env`, `comp` and `-e` values as extra vars and every
   other resolved var at inventory group_vars precedence (`split_vars`);
2. builder's finalize playbook (builder/playbooks/finalize.yml), whatever step 1 did:
   the image_hygiene role, the generic image checks, the comp's own checks, then the
   list of installed packages (handed back with set_stats: `Provisioning.package_list`).

The comp's own checks (a convention, not a setting): playbooks/<app>/checks-<comp>.yml,
an ordinary playbook (`hosts: all`) whose `ansible.builtin.assert` tasks are named
"check: ..." and change nothing (`changed_when: false` on commands). They run after
hygiene on the same connection, so they see what the image will contain; a failed assert
fails the bake, named in the error. playbooks/demo/checks-app.yml is an example.

`pre_provision_shell` and `post_provision_shell` (lists of shell commands) run on the same
connection right before and after the comp's playbook, as root, one task per command
(so their progress and output show like the playbook's), and before hygiene and checks.

Vars read here: builder_ansible_strategy (mitogen | linear), builder_skip_hygiene,
pre_provision_shell, post_provision_shell.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import private, process
from builder.config.layers import CLI_LAYER, ResolvedVars, is_builder_key
from builder.config.layout import Layout
from builder.provision.ansible import (
    NO_OPTIONS,
    STRATEGIES,
    AnsibleOptions,
    PlaybookRun,
    SshTarget,
    Strategy,
    TaskTiming,
    run_playbook,
)
from builder.render.template import template_provisioning

STRATEGY_VAR = "builder_ansible_strategy"
SKIP_HYGIENE_VAR = "builder_skip_hygiene"
CODEDEPLOY_VAR = "codedeploy_agent_install"
PRE_SHELL_VAR = "pre_provision_shell"
POST_SHELL_VAR = "post_provision_shell"
_BUNDLED = Path(__file__).resolve().parent / "playbooks"
FINALIZE_PLAYBOOK = _BUNDLED / "finalize.yml"
_NO_COMP_CHECKS = _BUNDLED / "no-checks.yml"
PACKAGES_STAT = "builder_packages"  # set_stats key of packages.yml
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0", "")


@dataclass(frozen=True)
class Provisioning:
    """The playbook runs of one bake: the comp's, then builder's finalize (when the
    first was not canceled)."""

    runs: tuple[PlaybookRun, ...]

    @property
    def canceled(self) -> bool:
        return any(run.canceled for run in self.runs)

    @property
    def package_list(self) -> str | None:
        """The installed packages as the finalize playbook listed them (tab-separated
        lines), or None when it did not run that far."""
        for run in self.runs:
            if run.playbook == FINALIZE_PLAYBOOK and PACKAGES_STAT in run.custom_stats:
                return str(run.custom_stats[PACKAGES_STAT])
        return None

    def slowest(self, count: int = 5) -> list[TaskTiming]:
        tasks = [task for run in self.runs for task in run.tasks]
        return sorted(tasks, key=lambda task: task.seconds, reverse=True)[:count]


def provision(
    layout: Layout,
    resolved: ResolvedVars,
    target: SshTarget,
    *,
    artifacts_dir: Path,
    vault_password: str | None,
    progress: Callable[[str], None],
    cancel: threading.Event,
    local: bool = False,
    options: AnsibleOptions = NO_OPTIONS,
) -> Provisioning:
    """Provision the instance at `target` for one bake; ProvisionFailed names the host
    and the failed task or check. A canceled run ends the sequence: the result's
    `canceled` is then true and the caller raises Interrupted.

    `options` (tags, diff, verbosity) apply to the comp's playbook only: builder's
    hygiene and checks run whole, whatever the tags.
    `local`: the bake runs against the local build host, where the CodeDeploy agent's
    bucket is out of reach, so the agent is not installed unless the vars say otherwise.
    """
    playbook = comp_playbook(layout, resolved)
    chosen = strategy(resolved)
    skip_hygiene = _flag(resolved, SKIP_HYGIENE_VAR)
    extravars, group_vars = split_vars(resolved)
    if local and CODEDEPLOY_VAR not in extravars and CODEDEPLOY_VAR not in group_vars:
        extravars[CODEDEPLOY_VAR] = False
        progress(f"local mode: the CodeDeploy agent is NOT installed ({CODEDEPLOY_VAR}: false; "
                 "its S3 bucket is out of reach)")

    def run(book: Path, variables: Mapping[str, Any],
            options: AnsibleOptions = NO_OPTIONS) -> PlaybookRun:
        return run_playbook(
            layout, book, target, variables, group_vars=group_vars, options=options,
            artifacts_dir=artifacts_dir,
            vault_password=vault_password, strategy=chosen,
            progress=lambda message: progress(f"{book.name}: {message}"), cancel=cancel,
        )

    runs: list[PlaybookRun] = []
    books: tuple[Path | None, ...] = ()
    if template_provisioning(resolved):
        progress("builder_provisioning: template: the template's own provisioners did the "
                 "provisioning; builder runs hygiene and checks only")
    else:
        books = (_shell_playbook(artifacts_dir, resolved, PRE_SHELL_VAR), playbook,
                 _shell_playbook(artifacts_dir, resolved, POST_SHELL_VAR))
    for book in books:
        if book is None:
            continue
        # --ansible-tags and the rest are the comp's playbook's only.
        runs.append(run(book, extravars, options if book == playbook else NO_OPTIONS))
        if runs[-1].canceled:
            return Provisioning(tuple(runs))
    if skip_hygiene:
        progress(f"WARNING: image hygiene SKIPPED ({SKIP_HYGIENE_VAR}: true): ssh host keys, "
                 "machine-id, logs, shell history and the builder's key stay unless the "
                 "playbook removes them; the image checks still run")
    checks = comp_checks(layout, resolved)
    finalize_run = run(FINALIZE_PLAYBOOK, extravars | {
        "builder_authorized_key": _public_key(target.private_key),
        "builder_comp_checks": str(checks or _NO_COMP_CHECKS),
        SKIP_HYGIENE_VAR: skip_hygiene,
    })
    return Provisioning((*runs, finalize_run))


def split_vars(resolved: ResolvedVars) -> tuple[dict[str, Any], dict[str, Any]]:
    """(extra vars, group vars): builder's own keys, `app`/`env`/`comp` and `-e` values
    stay extra vars; every other var goes in at inventory group_vars precedence, where
    play vars, vars_files, role vars and set_fact override it as they would a value in
    the repo's group_vars/all."""
    extra: dict[str, Any] = {}
    group: dict[str, Any] = {}
    for key, value in resolved.values.items():
        own = is_builder_key(key)
        from_cli = resolved.origins[key].layer == CLI_LAYER
        (extra if own or from_cli else group)[key] = value
    return extra, group


def tool_files(layout: Layout, resolved: ResolvedVars) -> list[Path]:
    """The files of the provisioning that builder adds to the comp's playbook (bundled
    playbooks, the image_hygiene role as the roles path finds it, the comp's checks):
    inputs of the bake's fingerprint."""
    files = sorted(p for p in _BUNDLED.iterdir() if p.suffix == ".yml")
    hygiene_role = next((folder / "image_hygiene" for folder in layout.roles_dirs()
                         if (folder / "image_hygiene").is_dir()), None)
    if hygiene_role is not None:
        files.extend(sorted(p for p in hygiene_role.rglob("*") if p.is_file()))
    checks = comp_checks(layout, resolved)
    return [*files, *([checks] if checks else [])]


def comp_playbook(layout: Layout, resolved: ResolvedVars) -> Path:
    """The comp's playbook; a ConfigError at the `playbook` setting when it is missing."""
    playbook = resolved.playbook_path
    if not playbook.is_file():
        raise resolved.problem("playbook", f"{layout.relative(playbook)} does not exist")
    return playbook


def shell_steps(resolved: ResolvedVars, key: str) -> list[str]:
    """The commands of `pre_provision_shell` / `post_provision_shell` (a list of strings)."""
    value = resolved.values.get(key)
    if value is None or value == []:
        return []
    if not isinstance(value, list) or not all(isinstance(c, str) and c.strip() for c in value):
        raise resolved.problem(key, "must be a list of shell commands (strings)")
    return list(value)


def _shell_playbook(artifacts_dir: Path, resolved: ResolvedVars, key: str) -> Path | None:
    """A playbook of one task per command (JSON is YAML), kept with the bake's artifacts."""
    commands = shell_steps(resolved, key)
    if not commands:
        return None
    book = artifacts_dir / f"{key}.yml"
    private.write_text(book, json.dumps([{
        "name": key, "hosts": "all", "become": True, "gather_facts": False,
        "tasks": [{"name": f"{key} {index}: {command.splitlines()[0][:80]}",
                   "ansible.builtin.shell": command}
                  for index, command in enumerate(commands, 1)],
    }], indent=2) + "\n")
    return book


def comp_checks(layout: Layout, resolved: ResolvedVars) -> Path | None:
    """playbooks/<app>/checks-<comp>.yml when the comp has its own image checks."""
    combo = resolved.combo
    checks = layout.root / "playbooks" / combo.app / f"checks-{combo.comp}.yml"
    return checks if checks.is_file() else None


def strategy(resolved: ResolvedVars) -> Strategy:
    """builder_ansible_strategy, checked."""
    value = str(resolved.values.get(STRATEGY_VAR, "mitogen"))
    for strategy in STRATEGIES:
        if value == strategy:
            return strategy
    raise resolved.problem(STRATEGY_VAR, f"must be one of {', '.join(STRATEGIES)}, not {value!r}")


def _flag(resolved: ResolvedVars, key: str) -> bool:
    value = resolved.values.get(key, False)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE + _FALSE:
        return text in _TRUE
    raise resolved.problem(key, f"must be true or false, not {value!r}")


def _public_key(private_key: Path) -> str:
    """The key builder logs in with, as authorized_keys holds it (hygiene removes it)."""
    done = process.run([process.require("ssh-keygen", "install openssh-client"), "-y", "-f",
                        str(private_key)], what="reading the builder's public key")
    return done.stdout.strip()
