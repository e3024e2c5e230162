"""The local build host: what a fresh EC2 builder instance is to a bake, on this machine.

A minimal Debian/Ubuntu root (the machine's own release) is made once with debootstrap
into a cache. Every bake mounts a fresh overlay over it — instant, and the overlay's
upper dir then holds exactly what the bake changed (what the image "contains") — and
runs sshd inside it with `chroot` on a free 127.0.0.1 port, with per-bake host keys and
the bake's user and key.

The cached root is every base image's; a base image that `local publish-source-ami`
gave a package (`--with-package`) has a layer of its own, `.builder/local/base-images/
<ami-id>/`: what installing that package changed, mounted between the root and the
bake's overlay, so a bake from that image has it (and `dpkg-query` lists it). A newer
base image's layer starts as a copy of the one it replaces: packages carry over.

Teardown kills everything running inside, unmounts and removes the copy; a registry
entry per host lets `stop_all` clean up after a crash. A failed bake may keep its host
for debugging (`bake --keep-on-failure`): the registry then says until when, sshd runs
on after the bake, and `stop_orphans` (`builder reap`) leaves it until that time or
until its run is named; `stop_all` (`local down`) stops it.

Services are installed but never started here (policy-rc.d, no systemd as PID 1):
roles enable units, the image starts them on its first boot.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from builder import private, process
from builder.config.layout import Layout
from builder.errors import InputError, OperationFailed, ProcessFailed, TimedOut, ToolMissing
from builder.local.state import state_dir
from builder.polling import poll_until

CACHE_ENV = "BUILDER_BUILDHOST_CACHE"
DEFAULT_CACHE = Path("/var/cache/builder/buildhost")

# What a cloud image has that the roles and Ansible need: sshd, python (with apt
# bindings for the apt module), sudo for become, systemd so units can be enabled.
_PACKAGES = ("openssh-server", "python3", "python3-apt", "sudo", "systemd", "systemd-sysv",
             "ca-certificates", "iproute2")
_MIRRORS = {"debian": "http://deb.debian.org/debian", "ubuntu": "http://archive.ubuntu.com/ubuntu"}
_DEBOOTSTRAP_TIMEOUT_S = 1800
_SSHD_READY_TIMEOUT_S = 15.0
_KILL_INSIDE_TIMEOUT_S = 5.0  # sessions may start more processes while we kill
_PORT_ATTEMPTS = 3
_HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
# Character devices a chroot needs (name, major, minor); /dev itself is a private tmpfs
# so nothing the bake does reaches the machine's /dev.
_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
            ("urandom", 1, 9), ("tty", 5, 0))
_REGISTRY_FILE = "host.json"
_KEPT_FOR, _KEPT_UNTIL = "kept_for_debug", "kept_until"  # registry keys of a kept host
BASE_LAYERS = "base-images"  # under the state folder: a layer per base image that has one
_PACKAGE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_PACKAGE_VERSION_RE = re.compile(r"[0-9][A-Za-z0-9.+~-]*")


@dataclass(frozen=True)
class BuildHost:
    """One running build host. `rootfs` is the root the bake changes; `changes` holds
    exactly what it changed (the overlay's upper dir)."""

    host: str
    port: int
    user: str
    rootfs: Path
    changes: Path
    home: Path  # the host's folder, with its registry entry

    def keep(self, run_id: str, until: str) -> None:
        """Leave this host running after the bake (`build_host` then tears nothing down)
        until `reap` finds `until` passed or is asked for `run_id`."""
        _write_registry(self.home, _registry(self.home) | {_KEPT_FOR: run_id,
                                                           _KEPT_UNTIL: until})

    def save_changes(self, dest: Path) -> Path:
        """Copy what the bake changed to `dest` (deleted files stay as overlay whiteouts),
        so the bake can keep what the image contains."""
        dest.mkdir(parents=True, exist_ok=True)
        process.run(["cp", "-a", f"{self.changes}/.", str(dest)], what="saving build host changes")
        return dest


def cache_dir() -> Path:
    """Where the build host's root filesystem is cached (BUILDER_BUILDHOST_CACHE)."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def ensure_image(progress: Callable[[str], None] | None = None) -> Path:
    """The cached root for this machine's release, made with debootstrap the first time
    (about a minute); later calls return at once. Safe to call from parallel bakes."""
    _require_root()
    distro, release = _machine_release()
    arch = process.run(["dpkg", "--print-architecture"], what="reading the architecture").stdout
    cache = cache_dir()
    image = cache / f"{release}-{arch.strip()}"
    if image.is_dir():
        return image
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        if image.is_dir():  # made by another bake while this one waited
            return image
        debootstrap = process.require("debootstrap", "apt-get install debootstrap")
        if progress:
            progress(f"making the build host image ({distro} {release}, once; about a minute)")
        started = time.monotonic()
        partial = Path(tempfile.mkdtemp(prefix=f".{image.name}-", dir=cache))
        try:
            process.run(
                [debootstrap, "--variant=minbase", f"--include={','.join(_PACKAGES)}",
                 release, str(partial), _MIRRORS[distro]],
                what="debootstrap of the build host image", timeout=_DEBOOTSTRAP_TIMEOUT_S,
            )
            _prepare_image(partial, distro, release)
            partial.chmod(0o755)  # mkdtemp made it private; it is the root of a system
            partial.rename(image)  # complete or absent, never half made
        finally:
            if partial.exists():  # failed or interrupted: debootstrap may have left mounts
                _discard(partial, partial)
        if progress:
            progress(f"build host image ready in {time.monotonic() - started:.0f}s: {image}")
    return image


def _prepare_image(root: Path, distro: str, release: str) -> None:
    # Keys are per bake (see _make_host_key); the image must not ship the ones made at install.
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    # Package scripts must not start services on this machine (they would listen on
    # its interfaces): 101 = "action forbidden", the Debian convention for chroots.
    policy = root / "usr" / "sbin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\n# builder build host: never start services\nexit 101\n",
                      encoding="utf-8")
    policy.chmod(0o755)
    # Updates and security, as on a cloud image; the lists are fetched here once so a
    # bake's `apt` with cache_valid_time need not fetch them again.
    if distro == "debian":
        sources = (f"deb {_MIRRORS[distro]} {release} main\n"
                   f"deb {_MIRRORS[distro]} {release}-updates main\n"
                   f"deb {_MIRRORS[distro]}-security {release}-security main\n")
    else:
        sources = "".join(f"deb {_MIRRORS[distro]} {suite} main universe\n"
                          for suite in (release, f"{release}-updates", f"{release}-security"))
    (root / "etc" / "apt" / "sources.list").write_text(sources, encoding="utf-8")
    with _chroot_mounts(root):
        process.run(["chroot", str(root), "apt-get", "update", "-q"],
                    what="apt-get update in the build host image", timeout=600)
        process.run(["chroot", str(root), "apt-get", "clean"], what="apt-get clean")


@contextlib.contextmanager
def build_host(layout: Layout, *, user: str, authorized_key: str,
               source_ami: str = "") -> Iterator[BuildHost]:
    """A fresh build host for one bake, torn down on exit (also on error or interrupt);
    with the base image's layer when `source_ami` has one."""
    image = ensure_image()
    home = _hosts_dir(layout) / f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
    layer = base_layer(layout, source_ami) if source_ami else None
    lower = f"{layer}:{image}" if layer is not None and layer.is_dir() else str(image)
    _check_mountable(image, home, *([layer] if layer is not None else []))
    rootfs, changes, work = home / "rootfs", home / "changes", home / "work"
    for folder in (rootfs, changes, work):
        folder.mkdir(parents=True)
    owner = {"rootfs": str(rootfs), "started_at": time.time(), "owner_pid": os.getpid()}
    _write_registry(home, owner)
    sshd: subprocess.Popen[str] | None = None
    try:
        process.run(
            ["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={lower},upperdir={changes},workdir={work}", str(rootfs)],
            what="mounting the build host root",
        )
        _mount_runtime(rootfs)
        _bind_name_files(home, rootfs)
        _add_user(rootfs, user, authorized_key)
        _make_host_key(rootfs)
        sshd, port = _start_sshd(home, rootfs)
        _write_registry(home, owner | {"port": port, "user": user, "sshd_pid": sshd.pid})
        yield BuildHost("127.0.0.1", port, user, rootfs, changes, home)
    finally:
        if _KEPT_UNTIL not in _registry(home):
            if sshd is not None:
                process.stop(sshd)
            _teardown(home)


def base_layer(layout: Layout, ami_id: str) -> Path:
    """Where a base image's own layer is (it may not exist: the root alone)."""
    return state_dir(layout) / BASE_LAYERS / ami_id


def check_package(package: tuple[str, str]) -> None:
    """A package `new_base_layer` can add: a valid name and version, not one of the
    build host root's own (a stand-in would replace the real one)."""
    name, version = package
    if not (_PACKAGE_NAME_RE.fullmatch(name) and _PACKAGE_VERSION_RE.fullmatch(version)):
        raise InputError(f"--with-package {name}={version}: expected NAME=VERSION, a "
                         "Debian package name and a version starting with a digit")
    if _installed_in(ensure_image(), name):
        raise InputError(f"--with-package {name}: the build host's root has a package "
                         f"{name}; a stand-in would replace it (pick a new name)")


@contextlib.contextmanager
def new_base_layer(layout: Layout, *, previous: str | None,
                   package: tuple[str, str] | None) -> Iterator[Callable[[str], bool]]:
    """The layer of a base image about to be published: a copy of `previous`'s layer,
    with `package` (name, version; see check_package) built as a small .deb and
    installed with dpkg. Yields `keep(ami_id)`, which puts it in place for the
    published image (False when there is nothing to keep: no package, no earlier
    layer); what is not kept is removed when the block ends."""
    earlier = base_layer(layout, previous) if previous else None
    if package is None and (earlier is None or not earlier.is_dir()):
        yield lambda _ami_id: False
        return
    image = ensure_image()
    folder = state_dir(layout) / BASE_LAYERS
    private.make_folders(folder)
    work = Path(tempfile.mkdtemp(prefix=".pending-", dir=folder))
    upper, scratch_dir, root = work / "upper", work / "work", work / "root"
    try:
        if earlier is not None and earlier.is_dir():
            process.run(["cp", "-a", str(earlier), str(upper)],
                        what=f"copying the layer of {previous}")
        else:
            upper.mkdir(mode=0o755)
        scratch_dir.mkdir()
        root.mkdir()
        _check_mountable(image, upper)
        if package is not None:
            name, version = package
            deb = _build_deb(work, name, version)
            process.run(["mount", "-t", "overlay", "overlay", "-o",
                         f"lowerdir={image},upperdir={upper},workdir={scratch_dir}",
                         str(root)], what="mounting the base image's layer")
            with _chroot_mounts(root):  # unmounts the overlay too when it ends
                shutil.copyfile(deb, root / "tmp" / deb.name)
                process.run(["chroot", str(root), "dpkg", "-i", f"/tmp/{deb.name}"],
                            what=f"installing {name} {version} in the base image's layer")
                (root / "tmp" / deb.name).unlink()

        def keep(ami_id: str) -> bool:
            upper.rename(base_layer(layout, ami_id))
            return True

        yield keep
    finally:
        _discard(work, root)


def _installed_in(image: Path, name: str) -> bool:
    status = image / "var" / "lib" / "dpkg" / "status"
    return f"Package: {name}\n" in status.read_text(encoding="utf-8", errors="replace")


def _build_deb(folder: Path, name: str, version: str) -> Path:
    """A package with one file (its version under /usr/share/doc), made by dpkg-deb."""
    tree = folder / "deb"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: builder local mode <root@localhost>\n"
        f"Description: a package a local base image carries ({version})\n", encoding="utf-8")
    doc = tree / "usr" / "share" / "doc" / name
    doc.mkdir(parents=True)
    (doc / "version").write_text(version + "\n", encoding="utf-8")
    deb = folder / f"{name}_{version}_all.deb"
    dpkg_deb = process.require("dpkg-deb", "apt-get install dpkg")
    process.run([dpkg_deb, "--root-owner-group", "--build", str(tree), str(deb)],
                what=f"building the {name} package")
    return deb


def stop_all(layout: Layout) -> int:
    """Tear down every build host of this root (running, or left by a crashed run)."""
    hosts = _where(layout, lambda _info: True)
    _tear_down_all(hosts)
    return len(hosts)


def kept_hosts(layout: Layout) -> list[str]:
    """The runs whose failed bake kept its build host (running or not)."""
    return [str(_registry(home).get(_KEPT_FOR, home.name))
            for home in _where(layout, lambda info: _KEPT_UNTIL in info)]


def stop_orphans(layout: Layout, *, now: datetime, release_run: str | None = None,
                 dry_run: bool = False) -> list[str]:
    """Tear down the build hosts whose bake is gone (`builder reap`); running bakes
    keep theirs, and a kept host stays until its time is before `now` or its run is
    `release_run`. Their names (only listed with `dry_run`)."""

    def orphan(info: dict[str, Any]) -> bool:
        if _KEPT_UNTIL in info:
            return info.get(_KEPT_FOR) == release_run or _before(info[_KEPT_UNTIL], now)
        return not (isinstance(info.get("owner_pid"), int) and process.alive(info["owner_pid"]))

    hosts = _where(layout, orphan)
    if not dry_run:
        _tear_down_all(hosts)
    return [home.name for home in hosts]


def _before(when: object, now: datetime) -> bool:
    try:
        return datetime.fromisoformat(str(when)) < now
    except ValueError:  # an entry that can't be read keeps nothing
        return True


def _where(layout: Layout, wanted: Callable[[dict[str, Any]], bool]) -> list[Path]:
    return [registry.parent
            for registry in sorted(_hosts_dir(layout).glob(f"*/{_REGISTRY_FILE}"))
            if wanted(_registry(registry.parent))]


def _registry(home: Path) -> dict[str, Any]:
    try:
        info = json.loads((home / _REGISTRY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _tear_down_all(hosts: list[Path]) -> None:
    if hosts:
        _require_root()
    for home in hosts:
        _teardown(home)


def _hosts_dir(layout: Layout) -> Path:
    return state_dir(layout) / "buildhosts"


def _write_registry(home: Path, info: dict[str, object]) -> None:
    (home / _REGISTRY_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _require_root() -> None:
    if os.geteuid() != 0:
        raise ToolMissing("the local build host needs root (debootstrap, mount, chroot): "
                          "run builder as root, e.g. with sudo")


def _machine_release() -> tuple[str, str]:
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            fields[key] = value.strip().strip('"')
    distro, release = fields.get("ID", ""), fields.get("VERSION_CODENAME", "")
    if distro not in _MIRRORS or not release:
        raise InputError(f"the local build host needs a Debian or Ubuntu machine "
                         f"(this is {fields.get('PRETTY_NAME', 'unknown')})")
    return distro, release


def _check_mountable(*folders: Path) -> None:
    # overlayfs options are comma- and colon-separated: such paths can't be given.
    for folder in folders:
        if any(c in str(folder) for c in ",:"):
            raise InputError(f"{folder}: a build host's folder must not contain ',' or ':'")


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _chroot_mounts(root: Path) -> Iterator[None]:
    """/proc, /dev and /run inside a root while commands run in it."""
    try:
        _mount_runtime(root)
        yield
    finally:
        _unmount_below(root)


def _mount_runtime(root: Path) -> None:
    def mount(fstype: str, target: Path, options: str) -> None:
        target.mkdir(parents=True, exist_ok=True)
        process.run(["mount", "-t", fstype, "-o", options, fstype, str(target)],
                    what=f"mounting {fstype} in the build host")

    mount("proc", root / "proc", "nosuid,nodev,noexec")
    mount("tmpfs", root / "dev", "mode=755,nosuid,size=1m")
    for name, major, minor in _DEVICES:
        os.mknod(root / "dev" / name, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        (root / "dev" / name).chmod(0o666)  # mknod's mode is masked by the umask
    mount("devpts", root / "dev" / "pts", "newinstance,ptmxmode=0666,mode=620,gid=5")
    (root / "dev" / "ptmx").symlink_to("pts/ptmx")
    mount("tmpfs", root / "dev" / "shm", "mode=1777,nosuid,nodev")
    mount("tmpfs", root / "run", "mode=755,nosuid,nodev")
    (root / "run" / "sshd").mkdir(mode=0o755)  # sshd's privilege separation dir
    (root / "run" / "lock").mkdir(mode=0o1777)


def _bind_name_files(home: Path, root: Path) -> None:
    """This machine's resolver and a hosts file naming it (sudo looks its host name up),
    mounted over the image's own so they never become part of what the bake changed."""
    hosts = home / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.1.1 {socket.gethostname()}\n"
                     "::1 localhost ip6-localhost ip6-loopback\n", encoding="utf-8")
    resolv = home / "resolv.conf"
    shutil.copyfile("/etc/resolv.conf", resolv)
    for source, name in ((hosts, "hosts"), (resolv, "resolv.conf")):
        target = root / "etc" / name
        if target.is_symlink() or not target.exists():
            target.unlink(missing_ok=True)
            target.touch()
        process.run(["mount", "--bind", str(source), str(target)],
                    what=f"mounting /etc/{name} in the build host")


def _add_user(root: Path, user: str, authorized_key: str) -> None:
    """The bake's login, as cloud-init makes it on EC2: passwordless sudo and the key."""
    chroot = ["chroot", str(root)]
    known = process.run([*chroot, "getent", "passwd", user], what="looking up the user",
                        check=False)
    if known.returncode != 0:
        process.run([*chroot, "useradd", "--create-home", "--shell", "/bin/bash", user],
                    what=f"creating user {user} on the build host")
        known = process.run([*chroot, "getent", "passwd", user], what="looking up the user")
    _name, _pw, uid, gid, _gecos, home_dir, _shell = known.stdout.strip().split(":")
    if user != "root":
        sudoers = root / "etc" / "sudoers.d" / "90-build-host-user"
        sudoers.write_text(f"{user} ALL=(ALL) NOPASSWD:ALL\n", encoding="utf-8")
        sudoers.chmod(0o440)
    ssh_dir = root / home_dir.lstrip("/") / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(authorized_key.strip() + "\n", encoding="utf-8")
    keys.chmod(0o600)
    for path in (ssh_dir, keys):
        os.chown(path, int(uid), int(gid))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _make_host_key(root: Path) -> None:
    """A fresh host key, as cloud-init makes on an instance's first boot (image hygiene
    removes it)."""
    process.run(["chroot", str(root), "ssh-keygen", "-q", "-t", "ed25519", "-N", "",
                 "-f", _HOST_KEY], what="making the build host's ssh host key")


class _SshdDidNotStart(OperationFailed):
    pass


def _start_sshd(home: Path, root: Path) -> tuple[subprocess.Popen[str], int]:
    """sshd on a free loopback port; a port taken between probe and bind is retried."""
    attempt = 1
    while True:
        port = _free_port()
        try:
            return _start_sshd_on(home, root, port), port
        except _SshdDidNotStart:
            if attempt == _PORT_ATTEMPTS:
                raise
            attempt += 1


def _start_sshd_on(home: Path, root: Path, port: int) -> subprocess.Popen[str]:
    """sshd in the foreground (so builder holds it), loopback only."""
    log_path = home / "sshd.log"
    with log_path.open("w", encoding="utf-8") as log:
        sshd = process.start(
            ["chroot", str(root), "/usr/sbin/sshd", "-D", "-e", "-p", str(port),
             "-o", "ListenAddress=127.0.0.1", "-o", f"HostKey={_HOST_KEY}",
             "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
             "-o", "PermitRootLogin=prohibit-password", "-o", "UseDNS=no",
             "-o", "MaxSessions=50", "-o", "MaxStartups=50"],
            stdout=log.fileno(),
        )

    def answers() -> bool | None:
        if sshd.poll() is not None:
            return False  # it exited: nothing to wait for
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.settimeout(2)
            if s.recv(8).startswith(b"SSH-"):
                return True
        return None

    with contextlib.suppress(TimedOut):
        if poll_until(answers, timeout_s=_SSHD_READY_TIMEOUT_S, interval_s=0.05,
                      what=f"sshd on port {port}"):
            return sshd
    process.stop(sshd)
    tail = log_path.read_text(encoding="utf-8", errors="replace").strip()[-500:]
    raise _SshdDidNotStart(f"the build host's sshd did not start on port {port}: {tail}")


def _teardown(home: Path) -> None:
    """Kill what runs inside, unmount, remove: safe to repeat, and after a crash."""
    _discard(home, home / "rootfs")


def _discard(folder: Path, root: Path) -> None:
    _kill_inside(root)
    _unmount_below(folder)
    _remove_tree(folder)


def _kill_inside(root: Path) -> None:
    """Every process whose root is this build host (sshd, its sessions, what Ansible
    left running): sessions outlive the listener."""
    target = str(root.resolve())

    def none_left() -> bool | None:
        found = False
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if str((entry / "root").readlink()) != target:
                    continue
                os.kill(int(entry.name), signal.SIGKILL)
                found = True
            except (OSError, ProcessLookupError):
                continue
        return None if found else True

    try:
        poll_until(none_left, timeout_s=_KILL_INSIDE_TIMEOUT_S, interval_s=0.1,
                   what=f"stopping what runs in {root}")
    except TimedOut as exc:
        raise OperationFailed(f"processes inside the build host {root} would not stop"
                              ) from exc


def _mounts_below(folder: Path) -> list[Path]:
    prefix = str(folder.resolve()) + "/"
    found: list[Path] = []
    for line in Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines():
        # Spaces and other specials in mount points are octal-escaped (\040).
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[1])
        if point.startswith(prefix) or point == prefix[:-1]:
            found.append(Path(point))
    return found


def _unmount_below(folder: Path) -> None:
    for point in sorted(_mounts_below(folder), key=lambda p: len(p.parts), reverse=True):
        done = process.run(["umount", str(point)], what=f"unmounting {point}", check=False)
        if done.returncode != 0:
            # Busy (a process we could not see): detach now, the kernel frees it later.
            process.run(["umount", "--lazy", str(point)], what=f"unmounting {point}")


def _remove_tree(folder: Path) -> None:
    if _mounts_below(folder):
        # Never delete through a mount into the cached image or the machine itself.
        raise ProcessFailed(f"{folder} still has mounts; not removing it", returncode=-1)
    shutil.rmtree(folder, ignore_errors=False)
