"""Which ansible.cfg a run uses, how builder reads it, and what it adds on top."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.bake.fingerprint import FileCache
from builder.config.layers import ConfigLoader
from builder.config.layout import Layout
from builder.errors import ConfigError
from builder.provision import ansible_cfg
from builder.provision.steps import split_vars


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("ANSIBLE_CONFIG", "ANSIBLE_ROLES_PATH", "ANSIBLE_CALLBACKS_ENABLED",
                 "ANSIBLE_INVENTORY"):
        monkeypatch.delenv(name, raising=False)
    write(tmp_path, "vars/.keep", "")
    write(tmp_path, "ansible/playbooks/web.yml", "- hosts: all\n")
    return tmp_path


def test_the_nearest_config_from_the_playbook_up_to_the_root(repo: Path) -> None:
    playbook = repo / "ansible/playbooks/web.yml"
    layout = Layout(repo)
    assert ansible_cfg.find(layout, playbook).path is None
    write(repo, "ansible.cfg", "[defaults]\nforks = 5\n")
    assert ansible_cfg.find(layout, playbook).path == repo / "ansible.cfg"
    nearer = write(repo, "ansible/ansible.cfg", "[defaults]\nforks = 10\n")
    assert ansible_cfg.find(layout, playbook).path == nearer


def test_ansible_config_wins_and_a_missing_one_is_bad_input(repo: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    elsewhere = write(repo, "ci/ansible-ci.cfg", "[defaults]\nforks = 1\n")
    write(repo, "ansible/ansible.cfg", "[defaults]\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(elsewhere))
    assert ansible_cfg.find(Layout(repo), repo / "ansible/playbooks/web.yml").path == elsewhere
    monkeypatch.setenv("ANSIBLE_CONFIG", str(repo / "nope.cfg"))
    with pytest.raises(ConfigError, match="ANSIBLE_CONFIG"):
        ansible_cfg.find(Layout(repo), repo / "ansible/playbooks/web.yml")


def test_paths_start_at_the_config_and_builder_only_appends(repo: Path) -> None:
    write(repo, "ansible/ansible.cfg",
          "[defaults]\nroles_path = roles.galaxy:roles ; vendored first\n"
          "callbacks_enabled = profile_tasks, timer\n"
          "inventory = inventory/hosts.ini\n"
          "[ssh_connection]\npipelining = False\n"
          "control_path = %(directory)s/%%h-%%r\n")
    write(repo, "ansible/inventory/group_vars/all.yml", "a: 1\n")
    layout = Layout(repo)
    config = ansible_cfg.find(layout, repo / "ansible/playbooks/web.yml")
    assert config.paths(ansible_cfg.ROLES_PATH) == [repo / "ansible/roles.galaxy",
                                                    repo / "ansible/roles"]
    assert config.inventory_all_vars() == [repo / "ansible/inventory/group_vars/all.yml"]
    settings = {o.env: o.value for o in ansible_cfg.run_settings(
        config, layout, callback_dir=repo / "cb", callback="builder_tasks",
        strategy="linear", mitogen_dir=None, private=repo / "private")}
    roles = settings["ANSIBLE_ROLES_PATH"].split(":")
    assert roles[:2] == [str(repo / "ansible/roles.galaxy"), str(repo / "ansible/roles")]
    assert roles[2:] == [str(p) for p in layout.roles_dirs()]
    assert settings["ANSIBLE_CALLBACKS_ENABLED"] == "profile_tasks,timer,builder_tasks"
    assert settings["ANSIBLE_CONFIG"] == str(repo / "ansible/ansible.cfg")
    assert "ANSIBLE_PIPELINING" not in settings  # the repo said no: its choice stands
    assert settings["ANSIBLE_HOST_KEY_CHECKING"] == "0"


def test_builder_keys_and_cli_values_stay_extra_vars(tmp_path: Path) -> None:
    write(tmp_path, "vars/shop/common/common.yml",
          "aws_region: eu-west-1\nsource_ami: ami-0123456789abcdef0\n"
          "motd: hello\nbuilder_skip_hygiene: false\nport: 80\n")
    write(tmp_path, "vars/shop/dev/common.yml",
          "components: [web]\naws_account_id: '111111111111'\n")
    resolved = ConfigLoader(Layout(tmp_path), {"port": "8080"}).resolve("shop", "dev", "web")
    extra, group = split_vars(resolved)
    assert group == {"motd": "hello"}
    assert {"app", "env", "comp", "aws_region", "components", "builder_skip_hygiene",
            "playbook"} <= set(extra)
    assert extra["port"] == 8080  # -e stays the strongest, as on ansible-playbook's line


def test_an_unrenderable_vars_path_stands_for_its_folder(tmp_path: Path) -> None:
    write(tmp_path, "vars/.keep", "")
    playbook = write(tmp_path, "playbooks/web.yml",
                     "- hosts: all\n  tasks:\n"
                     "    - ansible.builtin.include_vars:\n"
                     "        file: \"os/{{ ansible_facts.os_family }}.yml\"\n"
                     "  vars_files:\n    - \"env/{{ env }}.yml\"\n")
    for name in ("os/Debian.yml", "os/RedHat.yml", "env/dev.yml", "env/prod.yml"):
        write(tmp_path, f"playbooks/{name}", "x: 1\n")
    walk = FileCache().playbook_files(Layout(tmp_path), playbook)
    reached = {p.relative_to(tmp_path / "playbooks").as_posix()
               for p in walk.rendered({"env": "dev"})}
    assert reached == {"os/Debian.yml", "os/RedHat.yml", "env/dev.yml"}
