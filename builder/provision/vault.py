"""Where a vault password comes from, for `validate` as for `bake`: the
`--vault-password-file` flag, BUILDER_VAULT_PASSWORD_FILE, the SSM parameter named by
`vault_password_ssm_parameter` (online only), or the repo's ansible.cfg
`vault_password_file` (Ansible reads that one itself)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuilderError, InputError

PASSWORD_FILE_ENV = "BUILDER_VAULT_PASSWORD_FILE"  # noqa: S105 - a name, not a password
HOW_TO_GIVE = ("--vault-password-file, BUILDER_VAULT_PASSWORD_FILE, "
               "vault_password_ssm_parameter or ansible.cfg's vault_password_file")


@dataclass(frozen=True)
class VaultPassword:
    """A password (None: no source had one) and, when a source failed, why."""

    value: str | None
    source: str
    note: str = ""
    # The repo's ansible.cfg names an executable password file: Ansible runs it itself.
    ansible_reads: bool = False

    @property
    def opens(self) -> bool:
        """Whether Ansible gets a password (from builder or from the repo's config)."""
        return self.value is not None or self.ansible_reads


def from_file(flag: Path | None) -> VaultPassword | None:
    """The flag's file, else BUILDER_VAULT_PASSWORD_FILE's; None when neither is given."""
    path = flag or (Path(os.environ[PASSWORD_FILE_ENV])
                    if os.environ.get(PASSWORD_FILE_ENV) else None)
    if path is None:
        return None
    try:
        return VaultPassword(path.read_text(encoding="utf-8").strip(), str(path))
    except OSError as exc:
        raise InputError(f"vault password file {path}: {exc.strerror}") from exc


def from_ssm(parameter: str, read: Callable[[str], str]) -> VaultPassword:
    """The SSM parameter's value; a note instead when it can't be read (no AWS access
    where validate runs is not a config problem)."""
    try:
        return VaultPassword(read(parameter), f"SSM parameter {parameter}")
    except BuilderError as exc:
        return VaultPassword(None, f"SSM parameter {parameter}",
                             f"SSM parameter {parameter} unreadable: {exc.message}")


def from_config(named: Path | None) -> VaultPassword | None:
    """ansible.cfg's vault_password_file when this machine has it (a missing one is no
    source: the vault files it would open are then stood in, and named)."""
    if named is None or not named.is_file():
        return None
    if os.access(named, os.X_OK):
        return VaultPassword(None, f"{named} (ansible.cfg)", ansible_reads=True)
    try:
        return VaultPassword(named.read_text(encoding="utf-8").strip(), f"{named} (ansible.cfg)")
    except OSError as exc:
        raise InputError(f"vault password file {named} (ansible.cfg): {exc.strerror}") from exc
