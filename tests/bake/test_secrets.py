"""The vault password, the vault's values and the builder's SSH key never show up in a
process's argv, a log, an artifact, the output or the image."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.bake.leftovers import NOTHING_LEFT, leftovers
from tests.conftest import run_builder
from tests.leaks import ProcessScanner, files_containing

pytestmark = [pytest.mark.slow, pytest.mark.local]

PRIVATE_KEY_MARK = b"PRIVATE KEY-----"


@pytest.fixture
def vaulted(bake_root: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A vault file in dev, a password outside the repo, and a worker playbook that uses
    the vaulted value (no_log) without writing it into the image."""
    password = f"pw-{uuid.uuid4().hex}"
    token = f"tok-{uuid.uuid4().hex}"
    password_file = tmp_path / "vault-pass"
    password_file.write_text(password + "\n")
    vault = bake_root / "vars/demo/dev/secrets.vault.yml"
    vault.write_text(f"vault_api_token: {token}\n")
    subprocess.run([str(Path(sys.executable).parent / "ansible-vault"), "encrypt",
                    "--vault-password-file", str(password_file), str(vault)],
                   check=True, capture_output=True)
    playbook = bake_root / "playbooks/demo/packer-worker.yml"
    original = playbook.read_text()
    playbook.write_text(original.replace(
        "  roles:\n",
        "  vars_files:\n    - ../../vars/demo/{{ env }}/secrets.vault.yml\n  roles:\n",
    ) + "  tasks:\n    - name: Use the token\n      no_log: true\n"
        "      ansible.builtin.command: test -n '{{ vault_api_token }}'\n"
        "      changed_when: false\n"
        "    - name: Show the token (hidden)\n      no_log: true\n"
        "      ansible.builtin.debug:\n        msg: '{{ vault_api_token }}'\n")
    try:
        yield password, token, password_file
    finally:
        playbook.write_text(original)
        vault.unlink()


def test_vault_password_and_values_stay_secret(bake_root: Path, vaulted) -> None:  # type: ignore[no-untyped-def]
    password, token, password_file = vaulted
    needles = [password.encode(), token.encode()]
    with ProcessScanner([*needles, PRIVATE_KEY_MARK]) as watch:
        done = run_builder("--local", "bake", "demo", "dev", "worker", "--force",
                           "--vault-password-file", str(password_file), "--json", root=bake_root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert watch.scans > 20
    assert watch.hits == []
    output = (done.stdout + done.stderr).encode()
    assert not [n for n in needles if n in output]
    # Logs, artifacts, Ansible events, the saved image and every other piece of state.
    assert files_containing(bake_root / ".builder", needles) == []
    assert leftovers(bake_root) == NOTHING_LEFT


def test_vault_password_from_ssm(bake_root: Path, vaulted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    password, token, password_file = vaulted
    common = bake_root / "vars/demo/dev/common.yml"
    original = common.read_text()
    common.write_text(original + "vault_password_ssm_parameter: /demo/dev/vault-password\n")
    try:
        up = run_builder("local", "up", root=bake_root,
                         env={"BUILDER_LOCAL_VAULT_PASSWORD_FILE": str(password_file)})
        assert up.returncode == 0, up.stderr
        done = run_builder("--local", "bake", "demo", "dev", "worker", "--force",
                           root=bake_root)
    finally:
        common.write_text(original)
    assert done.returncode == 0, done.stderr[-3000:]
    assert password not in done.stdout + done.stderr
    assert files_containing(bake_root / ".builder", [password.encode(), token.encode()]) == []


def test_wrong_vault_password_fails_cleanly(bake_root: Path, vaulted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wrong = tmp_path / "wrong-pass"
    wrong.write_text("not-the-password\n")
    done = run_builder("--local", "bake", "demo", "dev", "worker", "--force",
                       "--vault-password-file", str(wrong), root=bake_root)
    assert done.returncode == 1
    assert "not-the-password" not in done.stdout + done.stderr
    assert leftovers(bake_root) == NOTHING_LEFT
