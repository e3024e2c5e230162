"""The provisioning sequence of a bake on a real build host: the comp's playbook, then
hygiene and image checks; vault secrets kept out of everything."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

from builder.bake.packages import parse_list
from builder.config.layout import Layout
from builder.errors import ConfigError, ProvisionFailed
from builder.local.buildhost import build_host
from builder.project import Project
from builder.provision.ansible import SshTarget
from builder.provision.steps import Provisioning, provision
from tests.leaks import ProcessScanner, files_containing
from tests.provision.conftest import Host

pytestmark = pytest.mark.slow


def _provision(host: Host, comp: str, tmp_path: Path, *, progress: list[str] | None = None,
               overrides: dict[str, str] | None = None, vault_password: str | None = None,
               app: str = "probe", env: str = "dev", local: bool = False) -> Provisioning:
    project = Project.open(str(host.layout.root), overrides=overrides or {})
    lines = progress if progress is not None else []
    return provision(project.layout, project.resolve(app, env, comp), host.target,
                     artifacts_dir=tmp_path / "artifacts", vault_password=vault_password,
                     progress=lines.append, cancel=threading.Event(), local=local)


def test_playbook_then_hygiene_then_checks(host: Host, tmp_path: Path) -> None:
    progress: list[str] = []
    done = _provision(host, "plain", tmp_path, progress=progress)

    assert [run.playbook.name for run in done.runs] == ["packer-plain.yml", "finalize.yml"]
    assert not done.canceled
    root = host.build.rootfs
    assert (root / "etc" / "probe-marker").read_text() == "probe-dev-plain"
    assert list((root / "etc" / "ssh").glob("ssh_host_*")) == []
    assert not (root / "home" / "ubuntu" / ".ssh" / "authorized_keys").exists()
    assert (root / "etc" / "machine-id").read_text() == ""
    assert "finalize.yml: task 1/" in "\n".join(progress)
    # The package list is read after hygiene and kept out of the events files.
    listed = parse_list(done.package_list or "")
    assert "openssh-server" in {package.name for package in listed}
    assert all(package.version and package.arch for package in listed)
    assert not files_containing(tmp_path / "artifacts", [b"openssh-server"])
    assert any(line.endswith("check: the marker names the comp") for line in progress)
    slowest = done.slowest()
    assert len(slowest) == 5
    assert [t.seconds for t in slowest] == sorted((t.seconds for t in slowest), reverse=True)


def test_a_failed_comp_check_fails_naming_it(host: Host, tmp_path: Path) -> None:
    with pytest.raises(ProvisionFailed) as failed:
        _provision(host, "plain", tmp_path, overrides={"probe_marker": "wrong"})
    assert failed.value.message == ("task 'check: the marker names the comp' failed on "
                                    "127.0.0.1: marker is wrong")


def test_generic_checks_catch_a_leftover_private_key(host: Host, tmp_path: Path) -> None:
    with pytest.raises(ProvisionFailed) as failed:
        _provision(host, "leaky", tmp_path)
    assert "check: no private keys or credentials" in failed.value.message
    assert "/root/.ssh/id_deploy" in failed.value.message


def test_skipping_hygiene_is_loud_and_the_checks_still_run(host: Host, tmp_path: Path) -> None:
    progress: list[str] = []
    with pytest.raises(ProvisionFailed, match="check: no ssh host keys"):
        _provision(host, "plain", tmp_path, progress=progress,
                   overrides={"builder_skip_hygiene": "true"})
    assert any(line.startswith("WARNING: image hygiene SKIPPED") for line in progress)
    assert list((host.build.rootfs / "etc" / "ssh").glob("ssh_host_*"))


def test_an_unknown_strategy_is_a_config_error(probe_root: Path, tmp_path: Path) -> None:
    project = Project.open(str(probe_root), overrides={"builder_ansible_strategy": "fast"})
    target = SshTarget("127.0.0.1", 9, "ubuntu", tmp_path / "no-key")
    with pytest.raises(ConfigError, match="builder_ansible_strategy: must be one of"):
        provision(project.layout, project.resolve("probe", "dev", "plain"), target,
                  artifacts_dir=tmp_path, vault_password=None, progress=lambda _: None,
                  cancel=threading.Event())


def test_the_vault_password_is_nowhere(host: Host, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    password, secret = f"vault-{uuid.uuid4().hex}", f"db-{uuid.uuid4().hex}"
    vault_file = host.layout.root / "vars" / "probe" / "dev" / "secret.vault.yml"
    vault_file.write_text(f"probe_db_password: {secret}\n")
    password_file = tmp_path / "vault-password"
    password_file.write_text(password)
    subprocess.run([str(Path(sys.executable).parent / "ansible-vault"), "encrypt",
                    "--vault-password-file", str(password_file), str(vault_file)], check=True,
                   capture_output=True)
    password_file.unlink()
    assert secret not in vault_file.read_text()
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    needles = [password.encode(), secret.encode()]
    progress: list[str] = []
    with ProcessScanner(needles) as scanner:
        _provision(host, "secret", tmp_path, progress=progress, vault_password=password)

    # The playbook read the secret (its hash is in the image) ...
    recorded = (host.build.rootfs / "etc" / "probe-secret.sha256").read_text()
    assert recorded == hashlib.sha256(secret.encode()).hexdigest()
    # ... and neither the password nor the no_log'd secret went anywhere.
    assert scanner.scans > 10 and scanner.hits == []
    assert not any(password in line or secret in line for line in progress)
    assert files_containing(tmp_path / "artifacts", needles) == []
    assert list((tmp_path / "artifacts").glob("*.jsonl"))
    assert files_containing(host.build.changes, needles) == []
    assert list(private_tmp.iterdir()) == [], "ansible-runner's private data is removed"


@pytest.mark.parametrize("comp", ["app", "worker"])
def test_demo_comps_provision_and_pass_their_checks(demo_root: Path, ssh_key: Path,
                                                    tmp_path: Path, comp: str) -> None:
    layout = Layout(demo_root)
    public = ssh_key.with_suffix(".pub").read_text()
    progress: list[str] = []
    with build_host(layout, user="ubuntu", authorized_key=public) as build:
        host = Host(build, SshTarget(build.host, build.port, build.user, ssh_key), layout)
        done = _provision(host, comp, tmp_path, progress=progress, app="demo", local=True)
        changes = build.save_changes(tmp_path / "image")

    assert [run.strategy for run in done.runs] == ["mitogen_linear", "mitogen_linear"]
    assert any("CodeDeploy agent is NOT installed" in line for line in progress)
    wants = changes / "etc" / "systemd" / "system" / "multi-user.target.wants"
    assert (wants / f"demo-{comp}.service").is_symlink()
    assert ((wants / "nginx.service").is_symlink()) is (comp == "app")
    assert (changes / "etc" / "demo" / f"{comp}.env").is_file()
    assert list((changes / "etc" / "ssh").glob("ssh_host_*")) == []
    assert "PermitRootLogin no" in (
        changes / "etc" / "ssh" / "sshd_config.d" / "10-builder-hardening.conf").read_text()
    assert (changes / "etc" / "machine-id").stat().st_size == 0
    assert any(line.endswith("check: services are enabled") for line in progress)
