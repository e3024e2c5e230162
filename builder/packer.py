"""Packer: its version, the argv builder runs it with, and its machine-readable output.

Only this module builds Packer command lines.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from builder import process
from builder.errors import Problem

INSTALL_HINT = "run `make setup` (Debian/Ubuntu: apt-get install packer)"
# The amazon plugin current Packer (1.7+) needs declared; 1.6 has it built in and
# rejects the block.
REQUIRED_PLUGINS_BLOCK = """packer {
  required_plugins {
    amazon = {
      version = ">= 1.2.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}
"""
_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
_LOCATION_RE = re.compile(r"on (?P<file>\S+?) line (?P<line>\d+)")
_ITEM_LOCATION_RE = re.compile(r"(?P<file>[^\s:]+\.pkr\.hcl):(?P<line>\d+),[\d-]+: (?P<text>.*)")
_ANSIBLE_SSH_ARGS = ("-o HostKeyAlgorithms=+ssh-rsa -o PubkeyAcceptedAlgorithms=+ssh-rsa "
                     "-o ControlMaster=auto -o ControlPersist=60s")
_COUNT_RE = re.compile(r"\d+ error\(s\) occurred:?")


@dataclass(frozen=True, order=True)
class PackerVersion:
    """An installed Packer's version (1.7 and later want a required_plugins block)."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> PackerVersion:
        found = _VERSION_RE.search(text)
        if not found:
            raise ValueError(f"not a Packer version: {text!r}")
        return cls(*(int(part) for part in found.groups()))

    @property
    def needs_required_plugins(self) -> bool:
        return (self.major, self.minor) >= (1, 7)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def executable() -> str:
    """The packer on PATH, or ToolMissing saying how to install it."""
    return process.require("packer", INSTALL_HINT)


@cache
def installed_version() -> PackerVersion:
    """Ask the installed packer for its version."""
    done = process.run([executable(), "version"], what="packer version")
    return PackerVersion.parse(done.stdout)


def _arg(path: Path, cwd: Path | None) -> str:
    """A file as Packer's argument: its name when Packer runs in its folder."""
    return path.name if cwd is None or path.parent == cwd else str(path)


def init_argv(template: Path, cwd: Path | None = None) -> list[str]:
    """`packer init` of a template (installs the plugins it requires)."""
    return [executable(), "init", _arg(template, cwd)]


def validate_argv(template: Path, var_file: Path, cwd: Path | None = None) -> list[str]:
    """`packer validate` of a template with its var file."""
    return [executable(), "validate", f"-var-file={_arg(var_file, cwd)}", _arg(template, cwd)]


def build_argv(template: Path, var_file: Path, cwd: Path | None = None, *,
               on_error: str = "cleanup") -> list[str]:
    """`packer build` of a template with its var file, machine-readable."""
    # -on-error=cleanup: a failed build never leaves its instance running; `abort` (for
    # `bake --keep-on-failure`) cleans up nothing, and builder decides what stays.
    return [executable(), "build", "-machine-readable", "-color=false", f"-on-error={on_error}",
            f"-var-file={_arg(var_file, cwd)}", _arg(template, cwd)]


def child_env(artifacts: Path) -> dict[str, str]:
    """What Packer's children need: builder's Python environment first on PATH (the
    shell-local callback, a template's own ansible provisioner), Packer's cache and
    plugin-free state kept out of the template's folder it runs in."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    return {"PATH": bin_dir + (os.pathsep + path if path else ""),
            "PACKER_CACHE_DIR": str(artifacts / "packer_cache"), "CHECKPOINT_DISABLE": "1",
            # For a template's own ansible provisioner (builder_provisioning: template):
            # Packer 1.6's SSH proxy offers only ssh-rsa host and user keys, which current
            # OpenSSH refuses unless told; a template's ansible_env_vars still win.
            "ANSIBLE_SSH_ARGS": _ANSIBLE_SSH_ARGS}


def validate(template: Path, var_file: Path, cwd: Path | None = None) -> list[Problem]:
    """`packer validate` on rendered files, run in `cwd` (the user template's folder, so
    relative paths resolve as for the user); each error with its file and line."""
    cwd = cwd or template.parent
    env = child_env(template.parent)
    if installed_version().needs_required_plugins:
        process.run(init_argv(template, cwd), what="packer init", cwd=cwd, env=env)
    done = process.run(validate_argv(template, var_file, cwd), what="packer validate",
                       cwd=cwd, env=env, check=False)
    if done.returncode == 0:
        return []
    return parse_errors(done.stdout + done.stderr, template)


def parse_errors(output: str, template: Path, what: str = "packer validate") -> list[Problem]:
    """Packer prints `Error: <summary>`, `on <file> line <n>:`, then the detail, which may
    be a list (`N error(s) occurred:` and `* item` lines, an item wrapping onto the
    next lines): one problem per item, each with the block's file and line."""
    problems: list[Problem] = []
    blocks = re.split(r"^Error: ", output, flags=re.MULTILINE)
    for block in blocks[1:]:
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        summary = lines[0] if lines else "invalid template"
        where = _LOCATION_RE.search(block)
        file = template.parent / Path(where["file"]).name if where else template
        line = int(where["line"]) if where else None
        detail: list[str] = []
        items: list[str] = []
        for text in lines[1:]:
            if _LOCATION_RE.match(text) or text.startswith("(") or re.match(r"\d+:", text):
                continue
            if text.startswith("* "):
                items.append(text[2:])
            elif items:
                items[-1] += " " + text
            elif not _COUNT_RE.fullmatch(text):
                detail.append(text)
        label = "" if _COUNT_RE.fullmatch(summary) else summary
        for item in items or [" ".join(detail)]:
            problems.append(_located(what, label, item, file, line, template))
    if not problems:
        last = output.strip().splitlines()[-1] if output.strip() else "failed"
        problems.append(Problem(f"{what}: {last}", template))
    return problems


def _located(what: str, label: str, text: str, file: Path, line: int | None,
             template: Path) -> Problem:
    """One error; one that names its own place (`<file>:<line>,<columns>: <summary>;
    <detail>`, as Packer 1.6 words a block's argument errors) gets that line."""
    inner = _ITEM_LOCATION_RE.search(text)
    if inner:
        return Problem(f"{what}: {inner['text'].replace('; ', ': ', 1)}",
                       template.parent / Path(inner["file"]).name, int(inner["line"]))
    return Problem(f"{what}: " + ": ".join(part for part in (label, text) if part), file, line)


@dataclass(frozen=True)
class MachineLine:
    """One line of `packer build -machine-readable`: timestamp,target,type,data..."""

    timestamp: int
    target: str
    kind: str
    data: tuple[str, ...]

    @property
    def message(self) -> str:
        """The text of a `ui` line (say/message/error)."""
        return self.data[1] if self.kind == "ui" and len(self.data) > 1 else ""


def parse_machine_line(line: str) -> MachineLine | None:
    """One line of Packer's -machine-readable output, or None if it isn't one."""
    parts = line.rstrip("\n").split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    data = tuple(
        part.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "\r")
        for part in parts[3:]
    )
    return MachineLine(int(parts[0]), parts[1], parts[2], data)


# Packer's amazon-ebs messages that open each phase a user cares about.
_PHASES = (
    ("Launching a source AWS instance", "launch"),
    ("Waiting for SSH to become available", "ssh"),
    ("Connected to SSH", "provision"),
    ("Stopping the source instance", "stop"),
    ("Adding tags to AMI", "tag"),
    ("Creating AMI tags", "tag"),
    ("Creating AMI", "image"),
    ("Terminating the source AWS instance", "cleanup"),
)


def phase_of(message: str) -> str | None:
    """The bake phase (launch, ssh, provision, stop, image, tag) a Packer message starts, if any."""
    for marker, phase in _PHASES:
        if marker in message:
            return phase
    return None


# Where amazon-ebs names an AMI it registered: its temporary (unencrypted) image
# ("AMI: ami-…"), and the final image as it tags it.
_REGISTERED_RE = re.compile(
    r"(?:^|: )AMI: (ami-[0-9a-f]+)\s*$|Adding tags to AMI \((ami-[0-9a-f]+)\)")


def registered_image(message: str) -> str | None:
    """The id of an AMI Packer says it registered (so a failed bake can remove it)."""
    found = _REGISTERED_RE.search(message)
    return (found[1] or found[2]) if found else None
