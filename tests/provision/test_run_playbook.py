"""run_playbook against a real build host: both strategies, failures, cancel, threads."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import pytest

from builder.config.layout import Layout
from builder.errors import ProvisionFailed
from builder.local.buildhost import build_host
from builder.provision import ansible
from builder.provision.ansible import PlaybookRun, SshTarget, Strategy, run_playbook
from tests.provision.conftest import Host

pytestmark = pytest.mark.slow


def _playbook(folder: Path, tasks: str, name: str = "play") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yml"
    path.write_text(f"- name: Test play\n  hosts: all\n  become: true\n  gather_facts: false\n"
                    f"  tasks:\n{tasks}")
    return path


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in argv:
            found.append(argv)
    return found


WRITE_FILES = """\
    - name: Write the first file
      ansible.builtin.copy: {content: "one {{ app }}", dest: /etc/test-one, mode: "0644"}
    - name: Write the second file
      ansible.builtin.copy: {content: "two", dest: /etc/test-two, mode: "0644"}
    - name: Look at the first file
      ansible.builtin.stat: {path: /etc/test-one}
"""


def _run(host: Host, playbook: Path, tmp_path: Path, *, strategy: Strategy = "mitogen",
         progress: list[str] | None = None, cancel: threading.Event | None = None,
         extravars: dict[str, object] | None = None) -> PlaybookRun:
    lines = progress if progress is not None else []
    return run_playbook(host.layout, playbook, host.target, extravars or {"app": "probe"},
                        artifacts_dir=tmp_path / "artifacts", vault_password=None,
                        strategy=strategy, progress=lines.append,
                        cancel=cancel or threading.Event())


@pytest.mark.parametrize(("strategy", "ansible_strategy"),
                         [("mitogen", "mitogen_linear"), ("linear", "linear")])
def test_playbook_runs_with_each_strategy(host: Host, tmp_path: Path, strategy: Strategy,
                                          ansible_strategy: str) -> None:
    progress: list[str] = []
    run = _run(host, _playbook(tmp_path, WRITE_FILES), tmp_path, strategy=strategy,
               progress=progress)

    assert (run.status, run.strategy) == ("successful", ansible_strategy)
    assert (host.build.rootfs / "etc" / "test-one").read_text() == "one probe"
    assert progress == ["task 1/3: Write the first file", "task 2/3: Write the second file",
                        "task 3/3: Look at the first file"]
    assert [(t.name, t.status) for t in run.tasks] == [
        ("Write the first file", "changed"), ("Write the second file", "changed"),
        ("Look at the first file", "ok")]
    assert all(t.seconds > 0 for t in run.tasks)
    events = [json.loads(line) for line in run.events_file.read_text().splitlines()]
    assert run.events_file.parent == tmp_path / "artifacts"
    assert [e["task"] for e in events if e["event"] == "runner_on_ok"] == [
        "Write the first file", "Write the second file", "Look at the first file"]
    assert not any("res" in e for e in events), "result payloads stay out of the artifacts"


def test_a_failed_task_names_host_task_and_message(host: Host, tmp_path: Path) -> None:
    tasks = WRITE_FILES + """\
    - name: Break on purpose
      ansible.builtin.command: ls /no/such/dir
"""
    with pytest.raises(ProvisionFailed) as failed:
        _run(host, _playbook(tmp_path, tasks), tmp_path)
    message = failed.value.message
    assert "task 'Break on purpose' failed on 127.0.0.1" in message
    assert "No such file or directory" in message


SECRET_TASKS = """\
    - name: Read a token
      ansible.builtin.command: echo registered-canary-7f3a
      register: token
      changed_when: false
    - name: Show the token
      ansible.builtin.debug: {var: token.stdout}
    - name: Handle the password quietly
      ansible.builtin.shell: echo "{{ quiet_password }}"; echo "{{ quiet_password }}" >&2; exit 3
      no_log: true
      ignore_errors: true
"""


def test_saved_events_hold_no_results_and_nothing_of_a_no_log_task(
        host: Host, tmp_path: Path) -> None:
    # At -v with --diff Ansible's output of each event carries the results: still none
    # of them is saved, nor anything a no_log task handles.
    run = run_playbook(host.layout, _playbook(tmp_path / "play", SECRET_TASKS), host.target,
                       {"app": "probe", "quiet_password": "no-log-canary-91cd"},
                       options=ansible.AnsibleOptions(diff=True, verbosity=1),
                       artifacts_dir=tmp_path / "artifacts", vault_password=None,
                       strategy="linear", progress=lambda _line: None,
                       cancel=threading.Event())

    assert [(t.name, t.status) for t in run.tasks] == [
        ("Read a token", "ok"), ("Show the token", "ok"),
        ("Handle the password quietly", "ignored")]
    files = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    assert files == [run.events_file]
    for path in files:
        text = path.read_text()
        assert "registered-canary-7f3a" not in text and "no-log-canary-91cd" not in text
    events = [json.loads(line) for line in run.events_file.read_text().splitlines()]
    kept = {"counter", "event", "created", "play", "task", "role", "host", "duration", "status"}
    assert all(set(e) <= kept for e in events), "names, hosts, status and timing only"
    assert {e["host"] for e in events if "status" in e} == {host.target.host}

    # A no_log task that fails: the error names the task, never what it handled.
    failing = SECRET_TASKS.replace("      ignore_errors: true\n", "")
    with pytest.raises(ProvisionFailed) as failed:
        run_playbook(host.layout, _playbook(tmp_path / "again", failing), host.target,
                     {"app": "probe", "quiet_password": "no-log-canary-91cd"},
                     artifacts_dir=tmp_path / "artifacts", vault_password=None,
                     strategy="linear", progress=lambda _line: None, cancel=threading.Event())
    assert "task 'Handle the password quietly' failed" in failed.value.message
    assert "no-log-canary-91cd" not in failed.value.message
    assert not any("canary" in p.read_text() for p in (tmp_path / "artifacts").rglob("*"))


def test_an_unloadable_mitogen_falls_back_to_linear(host: Host, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # A mitogen release that refuses this ansible-core, as older ones did for newer
    # Ansible: the strategy plugin raises when Ansible loads it.
    broken = tmp_path / "broken-mitogen"
    broken.mkdir()
    (broken / "mitogen_linear.py").write_text(
        "from ansible.errors import AnsibleError\n"
        "raise AnsibleError('Your Ansible version is too recent. The most recent version "
        "supported by Mitogen for Ansible is (2, 10).x.')\n")
    monkeypatch.setattr(ansible, "_mitogen_strategy_dir", lambda: broken)
    progress: list[str] = []

    run = _run(host, _playbook(tmp_path, WRITE_FILES), tmp_path, progress=progress)

    assert (run.status, run.strategy) == ("successful", "linear")
    assert any("falling back to Ansible's linear strategy" in line for line in progress)
    assert (host.build.rootfs / "etc" / "test-two").read_text() == "two"


def test_cancel_stops_the_run(host: Host, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the private dir goes
    tasks = WRITE_FILES + """\
    - name: Wait a long time
      ansible.builtin.command: sleep 120
    - name: Never reached
      ansible.builtin.copy: {content: "late", dest: /etc/test-late, mode: "0644"}
"""
    cancel = threading.Event()
    progress: list[str] = []

    def cancel_when_waiting() -> None:
        while not any("Wait a long time" in line for line in progress):
            time.sleep(0.05)
        time.sleep(0.5)
        cancel.set()

    threading.Thread(target=cancel_when_waiting, daemon=True).start()
    started = time.monotonic()
    run = _run(host, _playbook(tmp_path, tasks), tmp_path, progress=progress, cancel=cancel)

    assert run.canceled
    assert time.monotonic() - started < 30
    assert not (host.build.rootfs / "etc" / "test-late").exists()
    assert list(tmp_path.glob("builder-ansible-*")) == []
    assert _processes_mentioning(str(tmp_path)) == [], "the run left processes behind"


def test_parallel_runs_in_threads(host: Host, tmp_path: Path, ssh_key: Path) -> None:
    public = ssh_key.with_suffix(".pub").read_text()
    playbook = _playbook(tmp_path / "book", WRITE_FILES)
    results: dict[str, PlaybookRun] = {}
    errors: list[BaseException] = []

    with build_host(Layout(host.layout.root), user="ubuntu", authorized_key=public) as other:
        targets = {"first": host.target,
                   "second": SshTarget(other.host, other.port, other.user, ssh_key)}

        def bake(name: str) -> None:
            try:
                results[name] = run_playbook(
                    host.layout, playbook, targets[name], {"app": name},
                    artifacts_dir=tmp_path / name, vault_password=None, progress=lambda _: None,
                    cancel=threading.Event())
            except BaseException as exc:  # handed to the test thread
                errors.append(exc)

        threads = [threading.Thread(target=bake, args=(name,)) for name in targets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert errors == []
        assert (other.rootfs / "etc" / "test-one").read_text() == "one second"
    assert (host.build.rootfs / "etc" / "test-one").read_text() == "one first"
    assert {run.status for run in results.values()} == {"successful"}
