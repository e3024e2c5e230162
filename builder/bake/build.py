"""Bake: config → render → source AMI → fingerprint → (skip | packer build + Ansible)
→ a tagged AMI.

Packer launches the builder instance and makes the image; its shell-local provisioner
calls back into this process (builder.provision.hook over a unix socket) with the
instance's SSH address, and builder provisions it with ansible-runner over direct SSH.
The SSH key pair and security group are builder's own, tagged with the run id, and
removed whatever happens; Packer's instance carries the same tag (`builder reap`).

The AMI is `builder:status=building` (with the run id and owner) until everything else
is done, and builder retags it `baked` as the very last step; a failure or interrupt
after Packer started deregisters every AMI of the run (found by run id, by name, and by
the ids Packer printed: its temporary unencrypted image has neither) with its
snapshots. One bake of a comp runs at a time (the bake lock).

With `--keep-on-failure` Packer runs with `-on-error=abort` (it then cleans up nothing
on a failure): a failed Ansible task or image check keeps the instance, its key pair and
security group, tagged kept-until, and the private key in `.builder/kept/<run id>/`
(builder.bake.keep); every other failure terminates the instance here, as Packer would
have. The AMIs of the run go either way.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder import packer, private, process, records, scratch
from builder.aws import credentials, images, temporary
from builder.aws.calls import runs
from builder.bake import keep, packages, regions
from builder.bake.plan import Plan, plan, require_no_password
from builder.bake.regions import RegionCopy
from builder.batch import Failed, Ok, run_each
from builder.config.models import Combo
from builder.errors import (
    BakeFailed,
    BuilderError,
    InputError,
    Problem,
    ProvisionFailed,
)
from builder.interrupts import Cancel
from builder.output import ProgressFn, silent, table
from builder.project import BuildHost, Project
from builder.provision import hook
from builder.provision.ansible import NO_OPTIONS, AnsibleOptions
from builder.redact import remember
from builder.release import lock
from builder.render.template import write

if TYPE_CHECKING:
    from builder.provision.steps import Provisioning

_PACKER_STOP_TIMEOUT_S = 600
# The bake lock's lease: longer than any bake; a holder killed on this host is noticed
# at once, one on another machine by --break-lock or this expiry.
_BAKE_LOCK_MIN = 240


@dataclass(frozen=True)
class TaskTime:
    """How long one Ansible task took (the summary lists the slowest)."""

    name: str
    seconds: float


@dataclass(frozen=True)
class BakeResult:
    """A baked (or reused) AMI: what `bake` returns and prints."""

    combo: Combo
    ami_id: str
    region: str
    account: str
    skipped: bool
    fingerprint: str
    source_ami: str
    duration_s: float
    artifacts: Path | None
    ami_name: str = ""
    phases: dict[str, float] = field(default_factory=dict)
    slowest_tasks: tuple[TaskTime, ...] = ()
    notes: tuple[str, ...] = ()  # what went wrong without failing the bake
    copies: tuple[RegionCopy, ...] = ()  # in the other regions of a multi-region env

    exit_code = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.combo.app, "env": self.combo.env, "comp": self.combo.comp,
            "ami_id": self.ami_id, "region": self.region, "account": self.account,
            "skipped": self.skipped, "fingerprint": self.fingerprint,
            "source_ami": self.source_ami, "duration_s": round(self.duration_s, 2),
            "artifacts": str(self.artifacts) if self.artifacts else None,
            "notes": list(self.notes), "copies": [copy.to_json() for copy in self.copies],
        }

    def to_text(self) -> str:
        if self.skipped:
            return (f"{self.combo}: unchanged, using {self.ami_id} ({self.region}, "
                    f"fingerprint {self.fingerprint[:12]}); --force bakes anyway") + "".join(
                f"\n  copy in {c.region}: {c.ami_id}" + (" (made now)" if c.made else "")
                for c in self.copies)
        lines = [f"{self.combo}: baked {self.ami_id} {self.ami_name} in {self.region} "
                 f"({self.duration_s:.1f}s)"]
        if self.phases:
            lines.append("  phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.phases.items()))
        if self.slowest_tasks:
            lines.append("  slowest tasks:")
            lines.extend(f"    {t.seconds:6.1f}s  {t.name}" for t in self.slowest_tasks)
        lines.extend(f"  copy in {c.region}: {c.ami_id}" + ("" if c.made else " (found)")
                     for c in self.copies)
        if self.artifacts:
            lines.append(f"  artifacts: {self.artifacts}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


@dataclass(frozen=True)
class BakeBatch:
    """`bake APP ENV --all`: one outcome per comp."""

    outcomes: tuple[BakeResult | Failed, ...]

    @property
    def failures(self) -> list[Failed]:
        return [o for o in self.outcomes if isinstance(o, Failed)]

    @property
    def exit_code(self) -> int:
        """1 when any comp failed to bake (the others were baked)."""
        return 1 if self.failures else 0

    def to_json(self) -> list[dict[str, Any]]:
        return [o.to_json() for o in self.outcomes]

    def to_text(self) -> str:
        rows = [(str(o.combo), "FAILED" if isinstance(o, Failed) else
                 ("skipped" if o.skipped else "baked"),
                 o.error.message if isinstance(o, Failed) else o.ami_id)
                for o in self.outcomes]
        return table(("combo", "result", "AMI / error"), rows)


@dataclass(frozen=True)
class BakeOptions:
    """How to bake: force a rebuild, and where the vault password is."""

    force: bool = False
    vault_password_file: Path | None = None
    lock_wait_s: float = 0  # how long to wait for another bake of the comp to end
    break_lock: bool = False
    ansible: AnsibleOptions = NO_OPTIONS
    # Hours to keep the build host after a failed Ansible task or check; None: never.
    keep_hours: float | None = None
    # More tags for the AMI from its first moment (promote's lineage of a rebake).
    tags: tuple[tuple[str, str], ...] = ()


@runs("bake")
def bake(project: Project, combo: Combo, *, options: BakeOptions = BakeOptions(),
         progress: ProgressFn = silent, cancel: Cancel | None = None) -> BakeResult:
    """Bake the AMI of one combo, or return the existing one whose fingerprint matches.

    Plans (config, base image, fingerprint), then creates the temporary key pair and
    security group, runs `packer build` with builder provisioning the instance, tags the
    AMI and keeps the build's artifacts. Whatever happens, the temporary resources go.
    """
    cancel = cancel or Cancel()
    started = time.monotonic()
    subject = str(combo)
    progress(subject, "resolving config, base image and fingerprint")
    the_plan = plan(project, combo, options.ansible)
    waited: list[bool] = []

    def bake_lock() -> AbstractContextManager[object]:
        return lock.held(the_plan.env_aws, combo, minutes=_BAKE_LOCK_MIN, purpose=lock.BAKE,
                         wait_s=options.lock_wait_s, break_lock=options.break_lock,
                         progress=progress, cancel=cancel, on_wait=lambda: waited.append(True))

    if the_plan.existing is not None and not options.force:
        if len(the_plan.resolved.settings.aws_regions) == 1:
            return _unchanged(project, the_plan, the_plan.existing, progress, cancel, started)
        with bake_lock():  # it may copy to a region: never beside another bake's copies
            return _unchanged(project, the_plan, the_plan.existing, progress, cancel, started)
    cancel.raise_if_set()
    vault_password = _vault_password(the_plan, options)
    if vault_password is None:
        require_no_password(project, the_plan.resolved)
    with bake_lock():
        if waited and not options.force:  # the bake we waited for may have made it
            existing = next((i for i in images.images_of(
                the_plan.env_aws.client("ec2"), combo, fingerprint=the_plan.fingerprint.value)
                if i.status in images.USABLE_STATUSES), None)
            if existing is not None:
                return _unchanged(project, the_plan, existing, progress, cancel, started)
        return _Build(project, the_plan, vault_password, progress, cancel, started,
                      options.ansible, options.keep_hours, dict(options.tags)).run()


def _unchanged(project: Project, the_plan: Plan, existing: images.Image,
               progress: ProgressFn, cancel: Cancel, started: float) -> BakeResult:
    settings = the_plan.resolved.settings
    progress(str(the_plan.resolved.combo), f"unchanged: {existing.id} has this fingerprint")
    # A region without a copy (added to the env since, or its copy deleted) gets one.
    copies = regions.copy_to_regions(project, the_plan.resolved, existing, progress=progress,
                                     cancel=cancel)
    regions.retag(project, the_plan.resolved, copies,
                  {images.TAG_STATUS: images.AmiStatus.BAKED})
    return BakeResult(the_plan.resolved.combo, existing.id, settings.aws_region,
                      settings.aws_account_id, True, the_plan.fingerprint.value,
                      the_plan.source.id, time.monotonic() - started, None, existing.name,
                      copies=copies)


def bake_all(project: Project, app: str, env: str, *, jobs: int | None = None,
             options: BakeOptions = BakeOptions(), progress: ProgressFn = silent,
             cancel: Cancel | None = None) -> BakeBatch:
    """Every comp of the env in parallel; one failure doesn't stop the others."""
    cancel = cancel or Cancel()
    combos = [Combo(app, env, comp) for comp in project.config.components(app, env)]
    outcomes = run_each(
        combos, lambda combo: bake(project, combo, options=options, progress=progress,
                                   cancel=cancel),
        jobs=jobs, cancel=cancel, progress=progress, what="bake")
    return BakeBatch(tuple(o.value if isinstance(o, Ok) else o for o in outcomes))


def _vault_password(the_plan: Plan, options: BakeOptions) -> str | None:
    """From --vault-password-file, BUILDER_VAULT_PASSWORD_FILE, or the SSM parameter."""
    path = options.vault_password_file or (
        Path(os.environ["BUILDER_VAULT_PASSWORD_FILE"])
        if os.environ.get("BUILDER_VAULT_PASSWORD_FILE") else None)
    if path is not None:
        try:
            password = path.read_text(encoding="utf-8").strip()
            remember(password)
            return password
        except OSError as exc:
            raise InputError(f"vault password file {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise InputError(f"vault password file {path}: not UTF-8 text") from exc
    parameter = the_plan.resolved.settings.vault_password_ssm_parameter
    if parameter:
        from builder.aws import translate

        with translate(f"reading SSM parameter {parameter}"):
            reply = the_plan.env_aws.client("ssm").get_parameter(Name=parameter,
                                                                 WithDecryption=True)
        value = str(reply["Parameter"]["Value"])
        remember(value)
        return value
    return None


class _Build:
    """One `packer build` with everything around it; cleans up on every path."""

    def __init__(self, project: Project, the_plan: Plan, vault_password: str | None,
                 progress: ProgressFn, cancel: Cancel, started: float,
                 ansible_options: AnsibleOptions = NO_OPTIONS, keep_hours: float | None = None,
                 tags: Mapping[str, str] | None = None):
        self.project = project
        self.keep_hours = keep_hours
        self.tags = dict(tags or {})
        self.ansible_options = ansible_options
        self.plan = the_plan
        self.vault_password = vault_password
        self.progress = progress
        self.cancel = cancel
        self.started = started
        self.combo = the_plan.resolved.combo
        self.subject = str(self.combo)
        now = datetime.now(UTC)
        self.run_id = uuid.uuid4().hex[:12]
        self.build_id = f"{now:%Y%m%dT%H%M%SZ}-{self.run_id}"
        self.build_time = f"{now:%Y%m%d%H%M%S}-{self.run_id[:8]}"
        self.built_at = now.isoformat(timespec="seconds")
        self.artifacts = (project.layout.state_dir / "builds" / self.combo.app /
                          self.combo.env / self.combo.comp / self.build_id)
        self.ec2 = the_plan.env_aws.client("ec2")
        self.phases: dict[str, float] = {}
        self.provisioning: Provisioning | None = None
        self.provision_error: BuilderError | None = None
        # Unique per run: two bakes of one comp in the same second get different names.
        self.ami_name = f"{the_plan.resolved.settings.ami_name}-{self.build_time}"
        self.packer_started = False
        self.registered: set[str] = set()  # AMI ids Packer said it registered
        self.local_image: Path | None = None
        self.address: tuple[str, int] | None = None  # where provisioning reached the instance
        self.key_pair_id = ""
        self.security_group_id = ""
        self.host: BuildHost | None = None
        self.kept: keep.KeptHost | None = None  # the build host kept after a failure

    # -- orchestration --------------------------------------------------------
    def run(self) -> BakeResult:
        """The bake; once Packer may have registered an image, any failure or interrupt
        removes every image of this run (and its snapshots) before the error goes on."""
        try:
            return self._run()
        except BaseException:
            if self.packer_started:
                self._discard_images()
            else:  # no log nor image to look at: the build leaves no folder behind
                _remove_build_folder(self.artifacts)
            raise

    def _run(self) -> BakeResult:
        settings = self.plan.resolved.settings
        private.make_folders(self.artifacts)
        self.progress(self.subject, f"baking from {self.plan.source.id} "
                                    f"({self.plan.source.name}); build {self.build_id}")
        with ExitStack() as stack:
            temp = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix=scratch.prefix("bake"))))
            temp.chmod(0o700)
            key_file, public_key = _make_key(temp)
            run_values = self._run_values(key_file)
            # Packer's manifest goes to the private folder first: its post-processor
            # fails the build when the artifacts folder was deleted meanwhile.
            manifest = temp / "manifest.json"
            run_values["builder_manifest"] = str(manifest)
            stack.enter_context(self._key_pair(public_key, run_values))
            stack.enter_context(self._security_group(run_values))
            host = self._local_build_host(stack, public_key, run_values)
            socket_path = temp / "provision.sock"
            run_values["builder_provision_command"] = hook.command(socket_path)
            files = write(self.plan.rendered, self.artifacts, run_values)
            private.write_text(self.artifacts / "fingerprint.json", json.dumps(
                {"fingerprint": self.plan.fingerprint.value,
                 "inputs": self.plan.fingerprint.inputs}, indent=2, sort_keys=True) + "\n")
            written = sorted(path.name for path in self.artifacts.iterdir())
            listener = stack.enter_context(hook.listening(
                socket_path, lambda host, port: self._provision(host, port, key_file),
                name=f"provision-{self.run_id}"))
            ami_id = self._packer_or_keep(files.template, files.var_file,
                                          self._packer_credentials(stack, temp), key_file)
            listener.join(timeout=5)
            image = self._check_image(ami_id)
            if host is not None:
                self.progress(self.subject, "saving the local image")
                self.local_image = self.project.layout.state_dir / "local" / "images" / ami_id
                host.save_changes(self.local_image)
            notes = self._artifacts_kept([*written, "packer.log", "packer.out"])
            if manifest.exists():
                private.write_text(self.artifacts / manifest.name,
                                   manifest.read_text(encoding="utf-8"))
        copies = regions.copy_to_regions(self.project, self.plan.resolved, image,
                                         progress=self.progress, cancel=self.cancel)
        result = BakeResult(
            self.combo, ami_id, settings.aws_region, settings.aws_account_id, False,
            self.plan.fingerprint.value, self.plan.source.id, time.monotonic() - self.started,
            self.artifacts, image.name, dict(self.phases), self._slowest(), notes, copies)
        private.write_text(self.artifacts / "result.json",
                           json.dumps(result.to_json(), indent=2) + "\n")
        final_tags = {images.TAG_STATUS: str(images.AmiStatus.BAKED)}
        packages_sha256 = self._package_manifest()
        if packages_sha256:
            final_tags[images.TAG_PACKAGES_SHA256] = packages_sha256
        self.cancel.raise_if_set()
        deprecated_at = images.deprecate(self.ec2, image, settings.ami_deprecate_after_days)
        if deprecated_at:
            self.progress(self.subject, f"AMI {ami_id}: EC2 deprecates it at "
                                        f"{deprecated_at:%Y-%m-%d %H:%M} UTC")
        uploaded: tuple[str, ...] = ()
        bucket = settings.records_bucket
        if bucket:
            self.progress(self.subject, f"keeping the build record in s3://{bucket}")
            final_tags[images.TAG_RECORD], uploaded = records.upload_build(
                self.plan.env_aws, bucket, self.combo, ami_id, self.artifacts)
        try:
            # The very last step: only now may anything use the AMI (and its copies).
            regions.retag(self.project, self.plan.resolved, copies, final_tags)
            images.set_tags(self.ec2, image, final_tags)
        except BaseException:
            try:  # the AMI goes (run() discards it): so does its record
                records.remove(self.plan.env_aws, uploaded)
            except BuilderError as exc:
                self.progress(self.subject, f"could not remove the build record "
                                            f"({exc.message})")
            raise
        self.progress(self.subject, f"AMI {ami_id} is complete: tagged {images.AmiStatus.BAKED}")
        return result

    def _package_manifest(self) -> str:
        """packages.json from what the finalize playbook listed; its sha256, or "" when
        the image has neither dpkg nor rpm (said, not a failure)."""
        listed = self.provisioning.package_list if self.provisioning is not None else None
        found = packages.parse_list(listed or "")
        if not found:
            self.progress(self.subject, "no package manifest: the image has neither "
                                        "dpkg-query nor rpm")
            return ""
        return packages.write_manifest(self.artifacts, found)

    def _artifacts_kept(self, expected: list[str]) -> tuple[str, ...]:
        """The artifacts folder after the bake: deleted meanwhile (a cleanup, a person),
        it is made again for result.json; what was lost is said, in the result too."""
        if not self.artifacts.is_dir():
            self.artifacts.mkdir(parents=True)
            note = (f"the artifacts folder was deleted during the bake and made again; "
                    f"lost: {', '.join(expected)}")
        else:
            missing = [name for name in expected if not (self.artifacts / name).exists()]
            if not missing:
                return ()
            note = f"artifacts deleted during the bake: {', '.join(missing)}"
        self.progress(self.subject, note)
        return (note,)

    def _discard_images(self) -> None:
        """Deregister what Packer registered for this run (its temporary image too) and
        delete the snapshots; what can't be removed is said and left to `builder reap`."""
        try:
            found = {i.id: i for i in images.images_of_run(self.ec2, self.run_id,
                                                            [self.ami_name])}
            found.update(images.images_by_id(self.ec2, self.registered - found.keys()))
            for image in found.values():
                if image.state == "deregistered":  # Packer removed it itself
                    continue
                self.progress(self.subject, f"removing the incomplete AMI {image.id} "
                                            f"({image.name or 'unnamed'})")
                images.deregister(self.ec2, image)
            for snapshot in images.snapshots_of_run(self.ec2, self.run_id):
                images.delete_snapshot(self.ec2, snapshot)
        except BuilderError as exc:
            self.progress(self.subject, f"could not remove this run's AMIs ({exc.message}); "
                                        "`builder reap` will")
        if self.local_image is not None:
            shutil.rmtree(self.local_image, ignore_errors=True)

    def _run_values(self, key_file: Path) -> dict[str, Any]:
        owner = images.owner()
        run_tags = {images.TAG_RUN_ID: self.run_id, images.TAG_APP: self.combo.app,
                    images.TAG_ENV: self.combo.env, images.TAG_COMP: self.combo.comp,
                    temporary.TAG_STARTED_AT: self.built_at, images.TAG_OWNER: owner,
                    "Name": f"builder {self.combo} {self.run_id}"}
        # `building` with the run id and owner until the bake completes (see `_run`).
        tags = {
            "Name": self.ami_name, images.TAG_APP: self.combo.app,
            images.TAG_ENV: self.combo.env, images.TAG_COMP: self.combo.comp,
            images.TAG_FINGERPRINT: self.plan.fingerprint.value,
            images.TAG_SOURCE_AMI: self.plan.source.id,
            images.TAG_SOURCE_AMI_NAME: self.plan.source.name[:255],
            images.TAG_BUILT_AT: self.built_at, images.TAG_STATUS: images.AmiStatus.BUILDING,
            images.TAG_BUILD_ID: self.build_id, images.TAG_RUN_ID: self.run_id,
            images.TAG_OWNER: owner, **self.tags,
        }
        commit = _git_commit(self.project.layout.root)
        if commit:
            tags[images.TAG_GIT_COMMIT] = commit
        return {
            "builder_tags": tags, "builder_run_tags": run_tags,
            "builder_build_time": self.build_time,
            "builder_aws_region": self.plan.resolved.settings.aws_region,
            "builder_source_ami": self.plan.source.id,
            "builder_ssh_keypair_name": f"builder-{self.run_id}",
            "builder_ssh_private_key_file": str(key_file),
            "builder_ec2_endpoint": self.project.aws.local_endpoint or "",
        }

    @contextmanager
    def _key_pair(self, public_key: str, run_values: dict[str, Any]) -> Iterator[None]:
        name = run_values["builder_ssh_keypair_name"]
        self.key_pair_id = temporary.import_key_pair(self.ec2, name, public_key,
                                                     run_values["builder_run_tags"])
        with self._removing(f"key pair {name}", lambda: temporary.delete_key_pair(self.ec2, name)):
            yield

    @contextmanager
    def _security_group(self, run_values: dict[str, Any]) -> Iterator[None]:
        vpc_id = temporary.vpc_for_build(self.ec2, self.plan.rendered.network)
        group_id = temporary.create_security_group(
            self.ec2, f"builder-{self.run_id}", vpc_id,
            self.plan.resolved.settings.ssh_source_cidrs, run_values["builder_run_tags"])
        run_values["builder_security_group_id"] = self.security_group_id = group_id
        with self._removing(f"security group {group_id}",
                            lambda: temporary.delete_security_group(self.ec2, group_id)):
            yield

    @contextmanager
    def _removing(self, what: str, remove: Callable[[], None]) -> Iterator[None]:
        """Remove a temporary resource when the block ends (unless a failure kept the build
        host). When the block failed, its error stays the one shown: a removal failing too
        is said and left to `builder reap`."""
        try:
            yield
        except BaseException:
            if self.kept is not None:
                raise
            try:
                remove()
            except BuilderError as exc:
                self.progress(self.subject, f"could not remove {what} ({exc.message}); "
                                            "`builder reap` will")
            raise
        remove()

    def _local_build_host(self, stack: ExitStack, public_key: str,
                          run_values: dict[str, Any]) -> BuildHost | None:
        """In local mode the instance's SSH goes to a fresh local build host."""
        local_mode = self.project.local_mode
        if local_mode is None:
            return None
        self.progress(self.subject, "starting a fresh local build host")
        host = stack.enter_context(local_mode.build_host(
            self.project.layout, user=self.plan.resolved.settings.ssh_username,
            authorized_key=public_key, source_ami=self.plan.source.id))
        run_values["builder_ssh_host"] = host.host
        run_values["builder_ssh_port"] = host.port
        self.host = host
        return host

    def _provision(self, host: str, port: int, key_file: Path) -> dict[str, Any]:
        from builder.provision import steps as provision
        from builder.provision.ansible import SshTarget

        target = SshTarget(host, port, self.plan.resolved.settings.ssh_username, key_file)
        self.address = (host, port)
        self.progress(self.subject, f"provisioning {target.user}@{host}:{port} with Ansible")
        try:
            self.provisioning = provision.provision(
                self.project.layout, self.plan.resolved, target, artifacts_dir=self.artifacts,
                vault_password=self.vault_password,
                progress=lambda message: self.progress(self.subject, message),
                cancel=self.cancel.event, local=self.project.aws.is_local,
                options=self.ansible_options)
        except BuilderError as exc:
            self.provision_error = exc
            return {"ok": False, "message": exc.message}
        except Exception as exc:  # a bug must still fail the bake, not hang Packer
            self.provision_error = ProvisionFailed(f"provisioning crashed: {exc!r}")
            return {"ok": False, "message": self.provision_error.message}
        if self.provisioning.canceled:
            return {"ok": False, "message": "provisioning canceled"}
        return {"ok": True, "message": "provisioned"}

    # -- packer -------------------------------------------------------------------
    def _packer_credentials(self, stack: ExitStack, private: Path) -> dict[str, str]:
        """Packer's AWS environment. With an env role: a private config whose profile
        fetches the role's credentials from this process again whenever they expire (a
        bake may outlast the session), served while `stack` is open. Else the
        credentials as they are (a profile's or the environment's own)."""
        env_aws = self.plan.env_aws
        if not env_aws.assumes_role:
            return env_aws.credentials_env()
        socket_path = private / "credentials.sock"
        config = private / "aws-config"
        descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(credentials.config_text(socket_path, env_aws.region))

        def handed() -> dict[str, object]:
            answer = env_aws.role_credentials()
            self.progress(self.subject, f"credentials for Packer, valid until "
                                        f"{answer['Expiration']}")
            return answer

        stack.enter_context(credentials.serving(socket_path, handed,
                                                name=f"credentials-{self.run_id}"))
        # Inherited static keys would win over the profile: blanked, not passed on.
        return {**dict.fromkeys(credentials.STATIC_KEYS, ""),
                **credentials.packer_env(config, env_aws.region)}

    def _packer_or_keep(self, template: Path, var_file: Path, aws_env: dict[str, str],
                        key_file: Path) -> str:
        """Packer's build; with keep_hours, a failed provisioning keeps the build host
        (Packer aborted without cleaning up) and any other failure terminates the
        instance Packer left."""
        if self.keep_hours is None:
            return self._packer(template, var_file, aws_env)
        try:
            return self._packer(template, var_file, aws_env)
        except BaseException as exc:
            if exc is self.provision_error and self.address is not None:
                raise self._keep(self.provision_error, key_file,
                                 *self.address) from None
            self._terminate_instances()
            raise

    def _keep(self, error: BuilderError, key_file: Path, host: str, port: int) -> BuilderError:
        """Keep the build host of a failed provisioning: tag it kept-until, save its key,
        say how to reach it. The failure to return; if the host can't be kept, it is
        terminated and the failure is the provisioning's own."""
        assert self.keep_hours is not None
        until = (datetime.now(UTC) + timedelta(hours=self.keep_hours)).isoformat(
            timespec="seconds")
        settings = self.plan.resolved.settings
        kept: keep.KeptHost | None = None
        try:
            kept = keep.save(self.project.layout.state_dir, run_id=self.run_id,
                             combo=self.subject, account=settings.aws_account_id,
                             region=settings.aws_region, until=until, private_key=key_file,
                             user=settings.ssh_username, host=host, port=port)
            resources = [*temporary.run_instances(self.ec2, self.run_id), self.key_pair_id,
                         self.security_group_id]
            temporary.mark_kept(self.ec2, [r for r in resources if r], self.run_id, until)
            if self.host is not None:
                self.host.keep(self.run_id, until)
        except (BuilderError, OSError) as exc:
            if kept is not None:
                keep.forget(kept)
            reason = exc.message if isinstance(exc, BuilderError) else str(exc)
            self.progress(self.subject, f"could not keep the build host ({reason})")
            self._terminate_instances()
            return error
        self.kept = kept
        self.progress(self.subject, f"build host kept for debugging until {until}: "
                                    f"{kept.ssh_command}")
        return ProvisionFailed(f"{error.message}; build host kept for debugging until {until}: "
                           f"{kept.ssh_command} (`builder reap --run-id {self.run_id}` "
                           "removes it)")

    def _terminate_instances(self) -> None:
        """What Packer's clean-up would have done for its instance (it aborted)."""
        try:
            temporary.terminate_instances(self.ec2,
                                          temporary.run_instances(self.ec2, self.run_id))
        except BuilderError as exc:
            self.progress(self.subject, f"could not terminate the builder instance "
                                        f"({exc.message}); `builder reap` will")

    def _packer(self, template: Path, var_file: Path, aws_env: dict[str, str]) -> str:
        env = {**aws_env, "PACKER_LOG": "1",
               "PACKER_LOG_PATH": str(self.artifacts / "packer.log"),
               "PACKER_NO_COLOR": "1", **packer.child_env(self.artifacts)}
        self.cancel.raise_if_set()
        transcript = private.open_text(self.artifacts / "packer.out")
        self.packer_started = True
        # In the template's own folder: its relative paths resolve as for `packer build`.
        cwd = self.plan.rendered.source.parent
        # Its log, manifest and cache go in the build's folder: private, as builder's files.
        on_error = "cleanup" if self.keep_hours is None else "abort"
        child = process.start(packer.build_argv(template, var_file, cwd, on_error=on_error),
                              cwd=cwd, env=env, umask=private.CHILD_UMASK)
        ami_id, errors = "", []
        phase, phase_started = "start", time.monotonic()
        try:
            # Packer cleans up (instance, its own temporaries) on SIGINT; give it the chance.
            with self.cancel.on_cancel(lambda: process.signal_group(child, signal.SIGINT)), \
                    transcript:
                assert child.stdout is not None
                for raw in child.stdout:
                    transcript.write(raw)
                    line = packer.parse_machine_line(raw)
                    if line is None:
                        continue
                    registered = packer.registered_image(line.message)
                    if registered:
                        self.registered.add(registered)
                    if line.kind == "ui" and line.data[:1] == ("error",):
                        errors.append(line.message.strip())
                    new_phase = packer.phase_of(line.message) if line.kind == "ui" else None
                    if new_phase and new_phase != phase:
                        now = time.monotonic()
                        self.phases[phase] = self.phases.get(phase, 0.0) + now - phase_started
                        phase, phase_started = new_phase, now
                        self.progress(self.subject, f"packer: {new_phase}")
                    if line.kind == "artifact" and line.data[1:2] == ("id",):
                        ami_id = line.data[2].split(":")[-1]
                        self.registered.add(ami_id)
        except BaseException:
            # Whatever broke the loop, Packer is stopped and gone before its images are
            # looked for (else it could register one after the clean-up looked).
            process.signal_group(child, signal.SIGINT)
            raise
        finally:
            process.stop(child, signum=None, grace_s=_PACKER_STOP_TIMEOUT_S)
            returncode = child.wait()
        self.phases[phase] = self.phases.get(phase, 0.0) + time.monotonic() - phase_started
        self.phases.pop("start", None)
        self.cancel.raise_if_set()
        if self.provision_error is not None:
            raise self.provision_error
        if returncode != 0 or not ami_id:
            reason = next((e for e in reversed(errors) if e), f"exit code {returncode}")
            if reason.startswith("Error: "):  # Packer's own diagnostics: every item, located
                rendered = self.plan.rendered
                problems = [Problem(p.message.removeprefix("packer: "), rendered.source,
                                    rendered.template_line(p.line) if p.line else None)
                            for p in packer.parse_errors(reason, template, "packer")]
                reason = "; ".join(p.format(self.project.layout.root) for p in problems)
            raise BakeFailed(f"packer build failed: {reason} (log: "
                             f"{self.artifacts / 'packer.log'})")
        return ami_id

    def _check_image(self, ami_id: str) -> images.Image:
        found = images.describe(self.ec2, image_ids=[ami_id])
        if (not found or found[0].status != images.AmiStatus.BUILDING
                or found[0].tags.get(images.TAG_RUN_ID) != self.run_id):
            raise BakeFailed(f"{ami_id}: Packer reported it but it is missing or not tagged "
                             "with this run")
        self.progress(self.subject, f"AMI {ami_id} ({found[0].name}) is {found[0].state}")
        return found[0]

    def _slowest(self) -> tuple[TaskTime, ...]:
        if self.provisioning is None:
            return ()
        return tuple(TaskTime(t.name, t.seconds) for t in self.provisioning.slowest(5))


def _remove_build_folder(folder: Path) -> None:
    """The build's folder, and the comp's, env's and app's folders it leaves empty."""
    shutil.rmtree(folder, ignore_errors=True)
    for parent in list(folder.parents)[:3]:
        try:
            parent.rmdir()
        except OSError:  # not empty (earlier builds), or already gone
            break


def _make_key(folder: Path) -> tuple[Path, str]:
    """A per-bake ed25519 key; the private half stays in builder's 0700 temp dir."""
    key = folder / "id_ed25519"
    process.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "builder-bake",
                 "-f", str(key)], what="ssh-keygen")
    return key, key.with_suffix(".pub").read_text(encoding="utf-8").strip()


def _git_commit(root: Path) -> str:
    if not (root / ".git").exists():
        return ""
    done = process.run(["git", "-C", str(root), "rev-parse", "HEAD"], what="git rev-parse",
                       check=False)
    return done.stdout.strip() if done.returncode == 0 else ""

