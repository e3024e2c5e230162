"""A real build host (debootstrapped root, overlay, sshd) per test, reached with a
real key: the fixtures the provisioning tests stand on."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.config.layout import Layout
from builder.local.buildhost import BuildHost, build_host
from builder.provision.ansible import SshTarget
from tests.conftest import require_root


@dataclass(frozen=True)
class Host:
    """A running build host and how Ansible reaches it."""

    build: BuildHost
    target: SshTarget
    layout: Layout


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "builder-test",
                    "-f", str(key)], check=True)
    return key


@pytest.fixture
def probe_root(fixture_root: Callable[[str], Path]) -> Path:
    return fixture_root("provision")


@pytest.fixture
def host(probe_root: Path, ssh_key: Path) -> Iterator[Host]:
    require_root()
    layout = Layout(probe_root)
    public = ssh_key.with_suffix(".pub").read_text()
    with build_host(layout, user="ubuntu", authorized_key=public) as build:
        yield Host(build, SshTarget(build.host, build.port, build.user, ssh_key), layout)


def ssh(host: BuildHost, key: Path, command: str) -> subprocess.CompletedProcess[str]:
    """One command over plain OpenSSH, as any client would reach the host."""
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(host.port), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
         f"{host.user}@{host.host}", command],
        capture_output=True, text=True, timeout=60, check=False,
    )
