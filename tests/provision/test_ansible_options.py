"""`bake --ansible-tags/--ansible-skip-tags/--diff` and `-v`: what reaches
ansible-playbook, what the run shows, and what the fingerprint counts."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from builder.bake.fingerprint import compute
from builder.config.layers import ConfigLoader
from builder.config.layout import Layout
from builder.packer import PackerVersion
from builder.provision.ansible import AnsibleOptions, run_playbook
from builder.render.template import Renderer
from tests.provision.conftest import Host

TAGGED = """\
- name: Tagged play
  hosts: all
  become: true
  gather_facts: false
  tasks:
    - name: Write the config
      ansible.builtin.copy: {content: "port=80\\n", dest: /etc/tagged.conf, mode: "0644"}
      tags: [config]
    - name: Write the marker
      ansible.builtin.copy: {content: "marker\\n", dest: /etc/tagged.marker, mode: "0644"}
      tags: [marker]
"""


def test_argv_is_what_ansible_playbook_takes() -> None:
    options = AnsibleOptions(("config", "web"), ("slow",), diff=True, verbosity=2)
    assert options.argv() == ["--tags", "config,web", "--skip-tags", "slow", "--diff", "-vv"]
    assert AnsibleOptions().argv() == []
    assert AnsibleOptions(verbosity=9).argv() == ["-vvvv"]


def test_tags_change_the_fingerprint_diff_and_verbosity_do_not(demo_root: Path) -> None:
    layout = Layout(demo_root)
    resolved = ConfigLoader(layout).resolve("demo", "dev", "app")
    rendered = Renderer(layout, PackerVersion(1, 6, 6)).render(resolved)

    def value(options: AnsibleOptions) -> str:
        return compute(layout, resolved, rendered, "ami-0123456789abcdef0",
                       ansible_run=options.fingerprint_part()).value

    plain = value(AnsibleOptions())
    assert value(AnsibleOptions(diff=True, verbosity=3)) == plain
    assert compute(layout, resolved, rendered, "ami-0123456789abcdef0").value == plain
    assert value(AnsibleOptions(tags=("config",))) != plain
    assert value(AnsibleOptions(skip_tags=("config",))) != plain
    assert value(AnsibleOptions(tags=("a", "b"))) == value(AnsibleOptions(tags=("b", "a")))


@pytest.mark.slow
def test_tags_select_tasks_and_diff_is_shown(host: Host, tmp_path: Path) -> None:
    playbook = tmp_path / "tagged.yml"
    playbook.write_text(TAGGED)
    progress: list[str] = []
    run_playbook(host.layout, playbook, host.target, {"app": "probe"},
                 options=AnsibleOptions(tags=("config",), diff=True),
                 artifacts_dir=tmp_path / "artifacts", vault_password=None,
                 strategy="linear", progress=progress.append, cancel=threading.Event())
    assert (host.build.rootfs / "etc/tagged.conf").read_text() == "port=80\n"
    assert not (host.build.rootfs / "etc/tagged.marker").exists()
    assert "+port=80" in progress
    assert not any("Write the marker" in line for line in progress)
