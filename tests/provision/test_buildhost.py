"""The local build host: SSH on loopback, a fresh root every bake, nothing left after."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from builder.config.layout import Layout
from builder.local.buildhost import build_host, stop_all
from tests.conftest import require_root
from tests.provision.conftest import ssh


def _listening_addresses(port: int) -> set[str]:
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}


def _mounts_under(folder: Path) -> list[str]:
    lines = Path("/proc/self/mounts").read_text().splitlines()
    return [line.split()[1] for line in lines if line.split()[1].startswith(str(folder))]


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def test_build_host_answers_ssh_on_loopback_with_sudo(probe_root: Path, ssh_key: Path) -> None:
    require_root()
    layout = Layout(probe_root)
    public = ssh_key.with_suffix(".pub").read_text()
    with build_host(layout, user="ubuntu", authorized_key=public) as host:
        assert host.host == "127.0.0.1"
        done = ssh(host, ssh_key, "sudo -n id -u && . /etc/os-release && echo $ID")
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["0", "debian"]
        assert _listening_addresses(host.port) == {"127.0.0.1"}
        registry = list((probe_root / ".builder" / "local" / "buildhosts").glob("*/host.json"))
        assert [json.loads(r.read_text())["port"] for r in registry] == [host.port]
    assert _refused(host.port)
    assert _mounts_under(probe_root) == []
    assert list((probe_root / ".builder" / "local" / "buildhosts").iterdir()) == []


def test_every_bake_gets_a_fresh_root(probe_root: Path, ssh_key: Path,
                                      tmp_path: Path) -> None:
    require_root()
    layout = Layout(probe_root)
    public = ssh_key.with_suffix(".pub").read_text()
    with build_host(layout, user="ubuntu", authorized_key=public) as first:
        done = ssh(first, ssh_key, "echo baked | sudo tee /etc/first-bake && sudo rm /etc/issue")
        assert done.returncode == 0, done.stderr
        saved = first.save_changes(tmp_path / "first")
    assert (saved / "etc" / "first-bake").read_text() == "baked\n"
    assert (saved / "etc" / "issue").is_char_device()  # the overlay's record of a deletion
    with build_host(layout, user="ubuntu", authorized_key=public) as second:
        assert not (second.rootfs / "etc" / "first-bake").exists()
        assert (second.rootfs / "etc" / "issue").is_file()


def test_stop_all_cleans_up_after_a_crashed_run(probe_root: Path, ssh_key: Path) -> None:
    require_root()
    crash = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from builder.config.layout import Layout\n"
        "from builder.local.buildhost import build_host\n"
        "with build_host(Layout(Path(sys.argv[1])), user='ubuntu',\n"
        "                authorized_key=Path(sys.argv[2]).read_text()) as host:\n"
        "    print(host.port, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", crash, str(probe_root),
                           str(ssh_key.with_suffix(".pub"))],
                          capture_output=True, text=True, timeout=120, check=False)
    port = int(done.stdout)
    assert not _refused(port), "the crashed run's sshd should still be up"
    assert _mounts_under(probe_root)

    assert stop_all(Layout(probe_root)) == 1

    assert _refused(port)
    assert _mounts_under(probe_root) == []
    assert list((probe_root / ".builder" / "local" / "buildhosts").iterdir()) == []
    assert stop_all(Layout(probe_root)) == 0


def test_ansible_pings_the_build_host(probe_root: Path, ssh_key: Path) -> None:
    require_root()
    public = ssh_key.with_suffix(".pub").read_text()
    with build_host(Layout(probe_root), user="ubuntu", authorized_key=public) as host:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "ansible"), "all", "-i", f"{host.host},",
             "-u", host.user, "--private-key", str(ssh_key), "-e", f"ansible_port={host.port}",
             "-e", "ansible_python_interpreter=/usr/bin/python3", "-m", "ansible.builtin.ping",
             "--become"],
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False",
                 "ANSIBLE_SSH_ARGS": "-o UserKnownHostsFile=/dev/null"},
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"ping": "pong"' in done.stdout


def test_without_root_the_build_host_says_so(tmp_path: Path) -> None:
    probe = (
        "from builder.errors import ToolMissing\n"
        "from builder.local.buildhost import ensure_image\n"
        "try:\n"
        "    ensure_image()\n"
        "except ToolMissing as exc:\n"
        "    print(exc.exit_code, exc.message)\n"
    )
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    done = subprocess.run(
        [*(as_nobody if os.geteuid() == 0 else []), sys.executable, "-c", probe],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert done.stdout.startswith("2 the local build host needs root"), done.stderr
