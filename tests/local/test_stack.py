"""`builder local up/down/status`: idempotent, loopback only, and only with --local."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from builder.errors import InputError
from builder.local import stack
from builder.local.mode import LOCAL
from builder.project import Project

pytestmark = pytest.mark.local

ACCOUNTS = {"111111111111": "eu-west-1", "222222222222": "eu-west-1",
            "333333333333": "eu-central-1"}


def listeners(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp* shows them) listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.append(address)
    return found


def test_up_status_down_are_idempotent(demo_root: Path, cli: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(stack.NO_BUILD_HOST_ENV, "1")
    first = cli("local", "up", "--json", root=demo_root)
    assert first.exit_code == 0, first.output
    started = json.loads(first.stdout)
    assert started["running"] and started["note"] == "started"
    assert started["resources"]["made"] > 0 and not started["resources"]["problems"]
    assert started["build_host_image"] is None
    try:
        endpoint, pid = started["endpoint"], started["pid"]
        assert endpoint.startswith("http://127.0.0.1:")
        port = int(endpoint.rsplit(":", 1)[1])
        assert listeners(port) == ["0100007F"]  # 127.0.0.1, nothing else

        again = json.loads(cli("local", "up", "--json", root=demo_root).stdout)
        assert again["note"] == "already running"
        assert (again["endpoint"], again["pid"]) == (endpoint, pid)
        assert again["resources"]["made"] == 0

        shown = json.loads(cli("local", "status", "--json", root=demo_root).stdout)
        assert shown["running"] and shown["endpoint"] == endpoint
        for account, region in ACCOUNTS.items():
            held = shown["accounts"][account][region]
            assert len(held["launch_templates"]) == 2
            assert len(held["deployment_groups"]) == 2
        text = cli("local", "status", root=demo_root).stdout
        assert endpoint in text and "333333333333  eu-central-1" in text
    finally:
        stopped = cli("local", "down", "--json", root=demo_root)
    assert json.loads(stopped.stdout)["stopped"]
    assert not (demo_root / ".builder/local/server.json").exists()
    assert json.loads(cli("local", "status", "--json", root=demo_root).stdout)["running"] is False
    assert json.loads(cli("local", "down", "--json", root=demo_root).stdout)["stopped"] is False


def test_second_up_adds_only_what_is_missing(demo_root: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    password = tmp_path / "vault-password"
    password.write_text("s3cret\n")
    monkeypatch.setenv("BUILDER_LOCAL_VAULT_PASSWORD_FILE", str(password))
    project = Project.open(str(demo_root), local_mode=LOCAL,
                           overrides={"vault_password_ssm_parameter": "/demo/{{ env }}/vault"})
    stack.up(project, build_host=False, deploy_step_seconds=0.1)
    try:
        staging = project.env_aws(project.resolve("demo", "staging", "worker"))
        parameter = staging.client("ssm").get_parameter(
            Name="/demo/staging/vault", WithDecryption=True)["Parameter"]
        assert (parameter["Type"], parameter["Value"]) == ("SecureString", "s3cret")
        ec2 = staging.client("ec2")
        ec2.delete_launch_template(LaunchTemplateName="demo-staging-worker")

        report = stack.up(project, build_host=False).resources
        assert report is not None
        assert [(r.account, r.kind, r.name) for r in report.made] == [
            ("222222222222", "launch_template", "demo-staging-worker")]
        assert ec2.describe_launch_templates(LaunchTemplateNames=["demo-staging-worker"])
    finally:
        stack.down(project.layout)


def test_without_local_nothing_talks_to_the_emulator(local_stack: Project) -> None:
    plain = Project.open(str(local_stack.root))
    assert plain.aws.local_endpoint is None
    assert local_stack.aws.local_endpoint == stack.running_endpoint(local_stack.layout)


def test_local_mode_needs_a_running_stack(demo_root: Path) -> None:
    with pytest.raises(InputError, match="builder local up"):
        Project.open(str(demo_root), local_mode=LOCAL).aws  # noqa: B018 - the property is the test


@pytest.mark.slow
def test_up_prepares_the_build_host_image_by_default(demo_root: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(stack.NO_BUILD_HOST_ENV, raising=False)
    project = Project.open(str(demo_root), local_mode=LOCAL)
    try:
        started = stack.up(project, deploy_step_seconds=0.1)
        assert started.build_host_image is not None
        assert (Path(started.build_host_image) / "usr/sbin/sshd").exists()
    finally:
        assert stack.down(project.layout).build_hosts_stopped == 0


def test_up_with_broken_config_starts_nothing(demo_root: Path, cli: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(stack.NO_BUILD_HOST_ENV, "1")
    common = demo_root / "vars/demo/staging/common.yml"
    common.write_text(common.read_text().replace("components:", "comps:"))
    result = cli("local", "up", root=demo_root)
    assert result.exit_code == 2, result.output
    assert "components: required" in result.output and "Traceback" not in result.output
    assert not (demo_root / ".builder/local/server.json").exists()


def test_a_failed_up_stops_the_emulator_it_started(demo_root: Path, tmp_path: Path, cli: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The build host image step fails after the emulator started: no debootstrap on PATH
    # and an empty image cache.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dpkg").symlink_to("/usr/bin/dpkg")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("BUILDER_BUILDHOST_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(stack.NO_BUILD_HOST_ENV, raising=False)
    result = cli("local", "up", root=demo_root)
    assert result.exit_code == 2, result.output
    assert "debootstrap" in result.output
    assert not (demo_root / ".builder/local/server.json").exists()
    assert json.loads(cli("local", "status", "--json", root=demo_root).stdout)["running"] is False
