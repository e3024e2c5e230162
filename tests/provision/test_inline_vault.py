"""Inline `!vault` values in vars layers: read, shown as (vault), never decrypted by
builder, and opened by Ansible with the bake's vault password."""

from __future__ import annotations

import hashlib
import subprocess
import threading
from pathlib import Path

import pytest

from builder.config.layers import ConfigLoader
from builder.config.layout import Layout
from builder.config.source import VaultValue
from builder.errors import ValidationFailed
from builder.provision.ansible import run_playbook, tool
from tests.provision.conftest import Host

PASSWORD = "inline-vault-pw"


def encrypt(value: str, tmp_path: Path) -> str:
    """`ansible-vault encrypt_string` output, as a vars file holds it."""
    password = tmp_path / "pw"
    password.write_text(PASSWORD + "\n")
    done = subprocess.run([tool("ansible-vault"), "encrypt_string", "--vault-password-file",
                           str(password), value, "--name", "api_token"],
                          check=True, capture_output=True, text=True)
    return done.stdout


def repo(tmp_path: Path, extra: str) -> Path:
    root = tmp_path / "infra"
    (root / "vars/shop/common").mkdir(parents=True)
    (root / "vars/shop/dev").mkdir(parents=True)
    (root / "vars/shop/common/common.yml").write_text(
        "aws_region: eu-west-1\nsource_ami: ami-0123456789abcdef0\n" + extra)
    (root / "vars/shop/dev/common.yml").write_text(
        "components: [web]\naws_account_id: '111111111111'\n")
    return root


def test_inline_vault_values_stay_encrypted(tmp_path: Path) -> None:
    root = repo(tmp_path, encrypt("s3cret-token", tmp_path))
    resolved = ConfigLoader(Layout(root)).resolve("shop", "dev", "web")
    token = resolved.values["api_token"]
    assert isinstance(token, VaultValue) and token.ciphertext.startswith("$ANSIBLE_VAULT;")
    assert "api_token                     (vault)" in resolved.to_text()
    assert resolved.to_json()["vars"]["api_token"] == "(vault)"
    assert "s3cret-token" not in resolved.to_text()


def test_a_builder_key_may_not_be_vaulted(tmp_path: Path) -> None:
    root = repo(tmp_path, encrypt("alias/key", tmp_path).replace("api_token", "kms_key_id"))
    with pytest.raises(ValidationFailed) as failed:
        ConfigLoader(Layout(root)).resolve("shop", "dev", "web")
    assert "kms_key_id: a !vault value" in failed.value.format(root)


@pytest.mark.slow
def test_ansible_opens_an_inline_vault_value(host: Host, tmp_path: Path) -> None:
    root = repo(tmp_path, encrypt("s3cret-token", tmp_path))
    resolved = ConfigLoader(Layout(root)).resolve("shop", "dev", "web")
    playbook = tmp_path / "use-token.yml"
    playbook.write_text(
        "- name: Use the token\n  hosts: all\n  become: true\n  gather_facts: false\n"
        "  tasks:\n    - name: Keep its digest\n      ansible.builtin.copy:\n"
        "        content: \"{{ api_token | hash('sha256') }}\"\n"
        "        dest: /etc/token.sha256\n        mode: \"0600\"\n")
    run_playbook(host.layout, playbook, host.target, {"app": "shop"},
                 group_vars={"api_token": resolved.values["api_token"]},
                 artifacts_dir=tmp_path / "artifacts", vault_password=PASSWORD,
                 strategy="linear", progress=lambda _: None, cancel=threading.Event())
    assert (host.build.rootfs / "etc/token.sha256").read_text() == hashlib.sha256(
        b"s3cret-token").hexdigest()
