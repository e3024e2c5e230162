"""`validate` on the adopted repo: vault files with and without a password, and the
problems Ansible itself would only find at bake time (or never), with file:line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from builder.errors import InputError

VAULT_PASSWORD = "shop-dev-vault\n"
SECRET = "ansible/vars/secrets/dev.yml"
PLAYBOOK = "ansible/playbooks/web.yml"


@pytest.fixture
def shop(fixture_root: Any) -> Path:
    root: Path = fixture_root("adopted")
    return root


@pytest.fixture
def password(tmp_path: Path) -> Path:
    path = tmp_path / "vault-pass"
    path.write_text(VAULT_PASSWORD)
    return path


def validate(cli: Any, root: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("validate", "--json", *args, root=root)
    document: dict[str, Any] = json.loads(result.stdout)
    return result.exit_code, document


def errors(document: dict[str, Any]) -> list[str]:
    return [f"{e['file']}:{e['line']}: {e['message']}"
            for r in document["results"] for e in r["errors"]]


def test_without_a_password_the_rest_is_checked_and_the_vault_file_named(shop: Path,
                                                                        cli: Any) -> None:
    code, document = validate(cli, shop)
    assert code == 0, errors(document)
    (notes,) = [r["notes"] for r in document["results"]]
    assert len(notes) == 1 and SECRET in notes[0] and "--vault-password-file" in notes[0]

    # A broken task is still found, at its line in the repo (not in a stand-in copy).
    playbook = shop / PLAYBOOK
    playbook.write_text(playbook.read_text().replace(
        "  pre_tasks:\n", "  pre_tasks:\n    - name: Broken\n      ansible.builtin.copy: [\n"))
    code, document = validate(cli, shop)
    assert code == 2
    (problem,) = errors(document)
    assert problem.startswith(f"{PLAYBOOK}:") and "ansible syntax" in problem


@pytest.mark.parametrize("how", ["flag", "env"])
def test_with_the_password_vault_files_are_opened(shop: Path, cli: Any, password: Path,
                                                  how: str, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    args: tuple[str, ...] = ()
    if how == "flag":
        args = ("--vault-password-file", str(password))
    else:
        monkeypatch.setenv("BUILDER_VAULT_PASSWORD_FILE", str(password))
    code, document = validate(cli, shop, *args)
    assert code == 0, errors(document)
    assert document["results"][0]["notes"] == []
    assert document["results"][0]["vault_password_from"] == str(password)


def test_a_password_that_opens_nothing_names_the_file(shop: Path, cli: Any,
                                                      tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-it\n")
    code, document = validate(cli, shop, "--vault-password-file", str(wrong))
    assert code == 2
    assert errors(document) == [
        f"{SECRET}:1: vault-encrypted, and the vault password given doesn't open it"]


def test_ansible_cfg_vault_password_file_is_a_source(shop: Path, cli: Any,
                                                     password: Path) -> None:
    config = shop / "ansible/ansible.cfg"
    text = config.read_text()
    config.write_text(text.replace("[defaults]\n", f"[defaults]\nvault_password_file = "
                                                   f"{password}\n"))
    code, document = validate(cli, shop)
    assert code == 0 and document["results"][0]["notes"] == [], errors(document)
    # Named but absent on this machine: not an error; the vault file goes unchecked.
    config.write_text(text.replace("[defaults]\n",
                                   "[defaults]\nvault_password_file = ~/.shop-vault-absent\n"))
    code, document = validate(cli, shop)
    assert code == 0, errors(document)
    assert SECRET in document["results"][0]["notes"][0]


def test_silent_skips_become_problems_with_file_and_line(shop: Path, cli: Any,
                                                         password: Path) -> None:
    playbook = shop / PLAYBOOK
    playbook.write_text(playbook.read_text()
                        .replace('    - "../vars/secrets/{{ env }}.yml"\n',
                                 '    - "../vars/secrets/{{ env }}.yml"\n'
                                 '    - ../vars/{{ env }}-extra.yml\n'
                                 '    - ../vars/plain.vault.yml\n')
                        .replace("    - role: shop_web\n",
                                 "    - role: shop_web\n    - role: acme.nginx\n"))
    (shop / "ansible/vars/plain.vault.yml").write_text("shop_api_key: not-encrypted\n")
    (shop / "vars/shop/dev/keys.vault.yml").write_text("deploy_key: plain\n")
    code, document = validate(cli, shop, "--offline")
    assert code == 2
    lines = playbook.read_text().splitlines()
    extra = lines.index("    - ../vars/{{ env }}-extra.yml") + 1
    nginx = lines.index("    - role: acme.nginx") + 1
    found = errors(document)
    assert f"{PLAYBOOK}:{extra}: vars_files: '../vars/{{{{ env }}}}-extra.yml' reaches no " \
           f"file (ansible/vars/dev-extra.yml) from ansible/playbooks/" in found
    assert any(p.startswith(f"{PLAYBOOK}:{nginx}: role 'acme.nginx' not found (roles path: "
                            "ansible/playbooks/roles, ansible/roles.galaxy, ansible/roles")
               for p in found), found
    for name in ("ansible/vars/plain.vault.yml", "vars/shop/dev/keys.vault.yml"):
        assert f"{name}:1: named like a vault file but not encrypted: `ansible-vault " \
               "encrypt` it (or rename it)" in found


def test_verbose_lists_what_builder_adds_to_the_repos_config(shop: Path, cli: Any) -> None:
    result = cli("-v", "validate", "--offline", root=shop)
    assert result.exit_code == 0, result.output
    assert "ansible.cfg: ansible/ansible.cfg — shop/dev/web; builder sets:" in result.stdout
    roles = next(line for line in result.stdout.splitlines() if "ANSIBLE_ROLES_PATH=" in line)
    searched = roles.split("=", 1)[1].split(" — ")[0].split(":")
    assert [Path(p).name for p in searched[:2]] == ["roles.galaxy", "roles"]
    assert searched[-1].endswith("playbooks/roles")  # the bundled roles come last
    # The repo sets pipelining and interpreter_python: builder leaves them alone.
    assert "ANSIBLE_PIPELINING" not in result.stdout
    assert "ANSIBLE_PYTHON_INTERPRETER" not in result.stdout
    assert "ANSIBLE_STRATEGY=" in result.stdout
    # requirements.yml's collections come after Ansible's default places.
    collections = next(line for line in result.stdout.splitlines()
                       if "ANSIBLE_COLLECTIONS_PATH=" in line)
    assert "/.ansible/collections:" in collections
    assert "/.builder/ansible-requirements/" in collections


def test_vars_shows_what_only_ansible_resolves(shop: Path, cli: Any) -> None:
    result = cli("vars", "shop", "dev", "web", "--json", root=shop)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["vars"]["shop_support_line"] == "Support: {{ shop_support_email }}"
    assert document["resolved_by_ansible"] == ["shop_support_line"]


def test_requirements_are_installed_once_and_a_bad_source_stops_early(shop: Path,
                                                                      cli: Any) -> None:
    code, document = validate(cli, shop)
    assert code == 0, errors(document)
    (installed,) = (shop / ".builder/ansible-requirements").iterdir()
    assert (installed / "collections/ansible_collections/acme/tools/plugins/modules/"
                        "marker.py").is_file()
    found = [installed, *installed.rglob("*")]  # ansible-galaxy's files: private too
    assert not [p for p in found if p.stat().st_mode & 0o077]
    stamp = (installed / ".installed").stat().st_mtime_ns
    assert validate(cli, shop)[0] == 0
    assert (installed / ".installed").stat().st_mtime_ns == stamp  # reused, not redone

    requirements = shop / "ansible/requirements.yml"
    requirements.write_text(requirements.read_text().replace("1.0.0.tar.gz", "2.0.0.tar.gz"))
    # No local stack and no AWS access here: the error comes before any AWS call.
    result = cli("bake", "shop", "dev", "web", root=shop)
    assert result.exit_code == 2, result.output
    assert ("ansible/requirements.yml: can't install its requirements: Unable to find "
            "collection artifact file at 'collections/vendor/acme-tools-2.0.0.tar.gz'"
            in result.output)


def test_a_bake_without_a_password_for_its_vault_files_stops_early(
        shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from builder.bake.plan import require_no_password
    from builder.project import Project

    monkeypatch.delenv("BUILDER_VAULT_PASSWORD_FILE", raising=False)
    project = Project.open(str(shop))
    resolved = project.resolve("shop", "dev", "web")
    with pytest.raises(InputError, match=f"the play loads vault files \\({SECRET}\\)"):
        require_no_password(project, resolved)
    config = shop / "ansible/ansible.cfg"
    config.write_text(config.read_text().replace(
        "[defaults]\n", "[defaults]\nvault_password_file = .vault-pass\n"))
    with pytest.raises(InputError, match=r"vault_password_file .*/ansible/\.vault-pass does "
                                         r"not exist, and the play loads vault files"):
        require_no_password(project, resolved)
    (shop / "ansible/.vault-pass").write_text(VAULT_PASSWORD)
    require_no_password(project, resolved)  # Ansible reads the repo's own file
