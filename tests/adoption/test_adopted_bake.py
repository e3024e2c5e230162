"""An Ansible project nobody here wrote (tests/fixtures/adopted/) bakes in local mode
unchanged, with the values `ansible-playbook` would give it, and every kind of file
Ansible reads is a fingerprint input: editing it makes the next bake bake."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, run_builder, stack_for_bakes

pytestmark = [pytest.mark.slow, pytest.mark.local]

VAULT_PASSWORD = "shop-dev-vault\n"  # the fixture's ansible/vars/secrets/dev.yml


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and ".builder" not in p.relative_to(root).parts
            and ".git" not in p.relative_to(root).parts}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The adopted repo with a running local stack and the build host image."""
    if os.geteuid() != 0:
        pytest.fail("bake tests need root (the local build host mounts and chroots)")
    root = tmp_path_factory.mktemp("adopted") / "shop-infra"
    shutil.copytree(FIXTURES / "adopted", root)
    password = root.parent / "vault-password"
    password.write_text(VAULT_PASSWORD)
    with stack_for_bakes(root):
        yield root


def bake(root: Path, *args: str) -> dict[str, object]:
    done = run_builder("--local", "bake", "shop", "dev", "web", "--json", *args, root=root,
                       env={"BUILDER_VAULT_PASSWORD_FILE": str(root.parent / "vault-password")})
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout)
    return result


def image_file(root: Path, ami_id: object, path: str) -> str:
    return (root / ".builder/local/images" / str(ami_id) / path).read_text()


def due(root: Path) -> str:
    """The rebuild plan's reason for shop/dev/web ("" when nothing is due)."""
    done = run_builder("--local", "rebuild", "shop", "--dry-run", "--json", root=root)
    assert done.returncode == 0, done.stderr[-2000:]
    (entry,) = json.loads(done.stdout)
    return str(entry["reason"]) if entry["action"] == "bake" else ""


def test_it_bakes_unchanged_with_ansible_playbooks_values(shop: Path) -> None:
    before = tree_digest(shop)
    result = bake(shop)
    assert result["skipped"] is False
    assert tree_digest(shop) == before, "builder changed none of the repo's files"
    ami = result["ami_id"]

    # The galaxy role from roles.galaxy/ (ansible.cfg's roles_path); shop_org from the
    # layers beats the inventory's group_vars/all; the set_fact in pre_tasks overrides
    # the layered banner; shop_support_email exists only in inventory group_vars/all.
    assert image_file(shop, ami, "etc/motd") == (
        "Acme Shop\nWelcome to Acme Shop [dev image]\nSupport: ops@shop.example\n")
    # The repo's own `base` role, not builder's bundled one of the same name.
    assert image_file(shop, ami, "etc/shop/base.conf") == "timezone=Etc/UTC\n"
    # The filter plugin (shop_slug); vars_files by {{ env }} outrank the layers
    # (log_level, cache_mb); the role merges its default port with the layered list.
    assert image_file(shop, ami, "etc/shop/web.conf") == (
        "# Ansible managed\nsite = acme-shop-web\nlog_level = warn\ncache_mb = 64\n"
        "listen = 80,8080\n")
    # The custom module from library/.
    assert json.loads(image_file(shop, ami, "etc/shop/release.json")) == {
        "channel": "stable", "version": "2024.05"}
    # The module of a collection requirements.yml installs from a local tarball.
    assert image_file(shop, ami, "etc/shop/built-by") == "Acme Shop platform\n"
    # The vault-encrypted vars_files entry, decrypted with the bake's password.
    assert image_file(shop, ami, "etc/shop/db-password.sha256").strip() == (
        hashlib.sha256(b"dev-db-s3cret").hexdigest())

    inputs = json.loads((Path(str(result["artifacts"])) / "fingerprint.json").read_text())
    files = inputs["inputs"]["files"]
    for name in ("ansible/ansible.cfg", "ansible/vars/dev.yml", "ansible/vars/secrets/dev.yml",
                 "ansible/library/shop_release.py", "ansible/filter_plugins/shop_filters.py",
                 "ansible/inventory/group_vars/all/main.yml",
                 "ansible/roles.galaxy/acme.motd/templates/motd.j2",
                 "ansible/requirements.yml"):
        assert name in files, name
    assert "ansible/vars/prod.yml" not in files  # not reachable from dev

    assert bake(shop)["skipped"] is True
    released = run_builder("--local", "release", "shop", "dev", "web", "--json", root=shop)
    assert released.returncode == 0, released.stderr[-2000:]
    assert json.loads(released.stdout)["ami_id"] == ami


def _reencrypt(path: Path, text: str, password_file: Path) -> None:
    from builder.provision.ansible import tool

    plain = path.with_suffix(".plain")
    plain.write_text(text)
    subprocess.run([tool("ansible-vault"), "encrypt", "--vault-password-file",
                    str(password_file), "--output", str(path), str(plain)], check=True,
                   capture_output=True)
    plain.unlink()


EDITS = {
    "ansible/vars/dev.yml": lambda text: text.replace("warn", "error"),
    "ansible/ansible.cfg": lambda text: text + "\n[persistent_connection]\ncommand_timeout = 60\n",
    "ansible/filter_plugins/shop_filters.py": lambda text: text.replace('"-"', '"_"'),
    "ansible/library/shop_release.py": lambda text: text.replace("0o644", "0o640"),
    "ansible/inventory/group_vars/all/main.yml": lambda text: text + "shop_motd_extra: hi\n",
    "ansible/roles.galaxy/acme.motd/templates/motd.j2": lambda text: text + "--\n",
    "ansible/requirements.yml": lambda text: text.replace("type: file",
                                                          "type: file\n    version: 1.0.0"),
}


def test_each_input_kind_is_seen_and_a_change_rebakes(shop: Path) -> None:
    first = bake(shop)
    assert due(shop) == ""
    for name, edit in EDITS.items():
        path = shop / name
        original = path.read_text()
        path.write_text(edit(original))
        try:
            assert name in due(shop), name
        finally:
            path.write_text(original)
    assert due(shop) == ""

    secret = shop / "ansible/vars/secrets/dev.yml"
    original_secret = secret.read_bytes()
    _reencrypt(secret, "shop_db_password: rotated\n", shop.parent / "vault-password")
    assert "ansible/vars/secrets/dev.yml" in due(shop)
    secret.write_bytes(original_secret)

    # Not reachable from dev: no rebuild.
    prod = shop / "ansible/vars/prod.yml"
    prod.write_text(prod.read_text().replace("error", "debug"))
    assert due(shop) == ""

    dev = shop / "ansible/vars/dev.yml"
    dev.write_text(dev.read_text().replace("warn", "debug"))
    again = bake(shop)
    assert again["skipped"] is False and again["ami_id"] != first["ami_id"]
    assert "log_level = debug\n" in image_file(shop, again["ami_id"], "etc/shop/web.conf")
