"""Every error builder shows to a user.

    BuilderError                      exit 1 unless a subclass says otherwise
    ├── InputError                    exit 2: bad input, config or set-up
    │   ├── ConfigError               a vars file, a key, a value (file:line)
    │   ├── TemplateError             a Packer template: lookup, Jinja, HCL, variables
    │   ├── ValidationFailed          several problems found at once (builder validate)
    │   ├── RefusedError              a valid request that must not run (wrong AMI, unverified)
    │   └── ToolMissing               packer, debootstrap, root privileges
    ├── OperationFailed               exit 1: the work itself failed
    │   ├── ProcessFailed             an external command exited non-zero
    │   ├── AwsError                  an AWS call failed (translated from botocore once)
    │   ├── ProvisionFailed           an Ansible task or an image check failed
    │   ├── BakeFailed                packer build failed
    │   ├── DeployFailed              a CodeDeploy deployment failed, stopped or timed out
    │   ├── PromotionFailed           sharing or copying an AMI failed
    │   ├── LockedError               another release holds the (app, env, comp) lock
    │   └── TimedOut                  a wait ran past its deadline (builder.polling)
    └── Interrupted                   exit 130 (SIGINT) / 143 (SIGTERM)

Foreign exceptions are translated where they enter (builder.aws, builder.process,
builder.provision.ansible), so callers only ever see this tree.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path


def shown_path(path: Path, root: Path | None) -> Path:
    """A path as users see it: relative to the infra repo's root when inside it."""
    if root is not None and path.is_absolute() and path.is_relative_to(root):
        return path.relative_to(root)
    return path


def location(file: Path, line: int | None, root: Path | None = None) -> str:
    """`file:line` (or just the file) as users see it."""
    shown = shown_path(file, root)
    return f"{shown}:{line}" if line else str(shown)


@dataclass(frozen=True)
class Problem:
    """One located problem: what `validate` lists and what a ConfigError carries."""

    message: str
    file: Path | None = None
    line: int | None = None

    def where(self, root: Path | None = None) -> str:
        return "" if self.file is None else location(self.file, self.line, root)

    def format(self, root: Path | None = None) -> str:
        where = self.where(root)
        return f"{where}: {self.message}" if where else self.message


class BuilderError(Exception):
    """Base of every user-facing error; `exit_code` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, *, file: Path | None = None, line: int | None = None):
        super().__init__(message)
        self.problem = Problem(message, file, line)

    @property
    def message(self) -> str:
        return self.problem.message

    def format(self, root: Path | None = None) -> str:
        return self.problem.format(root)


class InputError(BuilderError):
    """Bad input, config or set-up: fix it and run again (exit 2)."""

    exit_code = 2


class ConfigError(InputError):
    """A vars file, a key or a value is wrong; carries its file and line."""


class TemplateError(InputError):
    """A Packer template can't be found, rendered or parsed, or misuses a variable."""


class RefusedError(InputError):
    """A valid request that must not run: a wrong or unverified AMI."""


class ToolMissing(InputError):
    """A program (packer, debootstrap) or a privilege (root) builder needs is missing."""


class ValidationFailed(InputError):
    """Several problems; `format` shows the first, `problems` holds all of them."""

    def __init__(self, problems: list[Problem]):
        super().__init__(problems[0].message, file=problems[0].file, line=problems[0].line)
        self.problems = problems

    def format(self, root: Path | None = None) -> str:
        return "\n".join(p.format(root) for p in self.problems)


class OperationFailed(BuilderError):
    """The work itself failed (exit 1)."""

    exit_code = 1


class ProcessFailed(OperationFailed):
    """An external command exited non-zero; keeps its exit status and output tail."""

    def __init__(self, message: str, *, returncode: int, output_tail: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.output_tail = output_tail


class AwsError(OperationFailed):
    """An AWS call failed; `code` is AWS's error code."""

    def __init__(self, message: str, *, code: str = ""):
        super().__init__(message)
        self.code = code


class ProvisionFailed(OperationFailed):
    """An Ansible task or an image check failed on the builder instance."""


class BakeFailed(OperationFailed):
    """`packer build` failed."""


class DeployFailed(OperationFailed):
    """A CodeDeploy deployment failed, was stopped or timed out."""


class PromotionFailed(OperationFailed):
    """Sharing, copying or re-encrypting an AMI for promotion failed."""


class LockedError(OperationFailed):
    """Another release holds the (app, env, comp) lock."""


class TimedOut(OperationFailed):
    """A wait ran past its deadline (builder.polling.poll_until)."""


class Interrupted(BuilderError):
    """Raised after cleanup when SIGINT/SIGTERM stopped the work."""

    def __init__(self, signum: int):
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name}; cleaned up")
        self.exit_code = 128 + signum
