"""The bake fingerprint: what changes it and what doesn't."""

from __future__ import annotations

from pathlib import Path

from builder.bake.fingerprint import Fingerprint, changed_parts, compute
from builder.config.layers import ConfigLoader
from builder.config.layout import Layout
from builder.packer import PackerVersion
from builder.render.template import Renderer

SOURCE = "ami-0123456789abcdef0"


def fingerprint(root: Path, source: str = SOURCE, **overrides: str) -> Fingerprint:
    layout = Layout(root)
    resolved = ConfigLoader(layout, overrides).resolve("demo", "dev", "app")
    rendered = Renderer(layout, PackerVersion(1, 6, 6)).render(resolved)
    return compute(layout, resolved, rendered, source)


def test_stable_for_unchanged_inputs(demo_root: Path) -> None:
    assert fingerprint(demo_root).value == fingerprint(demo_root).value


def test_covers_the_playbook_and_every_role_it_uses(demo_root: Path) -> None:
    files = fingerprint(demo_root).inputs["files"]
    assert "playbooks/demo/packer-app.yml" in files
    for role in ("base", "app_service", "codedeploy_agent"):
        assert any(name.startswith(f"playbooks/roles/{role}/") for name in files), role


def test_a_role_change_changes_it(demo_root: Path) -> None:
    before = fingerprint(demo_root)
    tasks = demo_root / "playbooks/roles/base/tasks/main.yml"
    tasks.write_text(tasks.read_text() + "\n# changed\n")
    after = fingerprint(demo_root)
    assert after.value != before.value
    assert changed_parts(before.inputs, after.inputs) == ["playbooks/roles/base/tasks/main.yml"]


def test_role_dependencies_and_include_role_are_followed(demo_root: Path) -> None:
    extra = demo_root / "playbooks/roles/extra/tasks"
    extra.mkdir(parents=True)
    (extra / "main.yml").write_text("- name: x\n  ansible.builtin.debug: {msg: x}\n")
    deep = demo_root / "playbooks/roles/deep/tasks"
    deep.mkdir(parents=True)
    (deep / "main.yml").write_text("- name: y\n  ansible.builtin.debug: {msg: y}\n")
    meta = demo_root / "playbooks/roles/extra/meta"
    meta.mkdir()
    (meta / "main.yml").write_text("dependencies:\n  - role: deep\n")
    playbook = demo_root / "playbooks/demo/packer-app.yml"
    playbook.write_text(playbook.read_text() + "  tasks:\n    - name: more\n"
                        "      ansible.builtin.include_role:\n        name: extra\n")
    files = fingerprint(demo_root).inputs["files"]
    assert "playbooks/roles/extra/tasks/main.yml" in files
    assert "playbooks/roles/deep/tasks/main.yml" in files


def test_an_unused_role_does_not_count(demo_root: Path) -> None:
    before = fingerprint(demo_root).value
    unused = demo_root / "playbooks/roles/unused/tasks"
    unused.mkdir(parents=True)
    (unused / "main.yml").write_text("- ansible.builtin.debug: {msg: z}\n")
    assert fingerprint(demo_root).value == before


def test_vars_source_ami_and_vault_change_it(demo_root: Path) -> None:
    base = fingerprint(demo_root)
    assert fingerprint(demo_root, app_log_level="warning").value != base.value
    assert fingerprint(demo_root, source="ami-0fedcba9876543210").value != base.value
    (demo_root / "vars/demo/dev/secrets.vault.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n01\n")
    with_vault = fingerprint(demo_root)
    assert changed_parts(base.inputs, with_vault.inputs) == ["vars/demo/dev/secrets.vault.yml"]


def test_a_comment_in_a_vars_file_does_not_change_it(demo_root: Path) -> None:
    before = fingerprint(demo_root).value
    vars_file = demo_root / "vars/demo/dev/common.yml"
    vars_file.write_text("# reviewed\n" + vars_file.read_text())
    assert fingerprint(demo_root).value == before


def test_a_comment_in_a_vars_file_the_playbook_loads_does_not_change_it(demo_root: Path
                                                                        ) -> None:
    # A layer the playbook lists in vars_files counts through the resolved vars, not as text.
    playbook = demo_root / "playbooks/demo/packer-app.yml"
    playbook.write_text(playbook.read_text().replace(
        "  roles:\n", "  vars_files:\n    - ../../vars/demo/common/common.yml\n  roles:\n"))
    before = fingerprint(demo_root)
    vars_file = demo_root / "vars/demo/common/common.yml"
    vars_file.write_text("# reviewed\n" + vars_file.read_text())
    after = fingerprint(demo_root)
    assert changed_parts(before.inputs, after.inputs) == []
    assert after.value == before.value


def test_every_builder_key_is_either_an_image_input_or_an_env_value() -> None:
    """What a rebake compares between envs: a new key must say which it is, or a
    promote_by: rebake would refuse over (or, worse, ignore) it."""
    from builder.bake.fingerprint import ENV_VARS
    from builder.config.keys import KEYS

    image_inputs = {"packer_template", "playbook", "source_ami_filter", "ssh_username"}
    assert {key.name for key in KEYS} - image_inputs <= ENV_VARS
    assert not image_inputs & ENV_VARS
