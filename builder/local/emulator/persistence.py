"""The emulator's state on disk, so `local down`/`up` and a crash of the emulator keep
what the stack holds: every moto backend in use (EC2 images and launch templates, Auto
Scaling, CodeDeploy, DynamoDB, KMS, SSM, S3, IAM, STS, ...) and builder's own state (the
deployments the CodeDeploy emulator is running, whether IAM is enforced).

The snapshot is one pickle, `<state-dir>/state.pickle` (0600; the server names it), of
the backends as moto 5.2.5 keeps them: a record of calls to replay would have to replay
the CodeDeploy emulator's clock and the control routes too. Two things moto holds don't
pickle and are reduced here: KMS keys' private keys (kept as DER) and SSM's tag table (a
defaultdict whose factory is a lambda). A snapshot names the moto version it was made
with; one from another version, or one that can't be read, is set aside
(`state.pickle.unreadable`) and the stack starts empty, saying so (`local up`).

The keeper writes the snapshot at most every `interval_s` after a change (a request that
may write, or a deployment the emulator moves), and once more on shutdown, so SIGKILL
loses at most the last interval. The file is written to a temporary name and renamed:
a kill mid-write leaves the previous snapshot.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import pickle
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

log = logging.getLogger("builder.local.emulator.persistence")

FORMAT = 1
DEFAULT_INTERVAL_SECONDS = 1.0
# The one lambda-made defaultdict of the backends builder uses (SSM's resource tags:
# defaultdict(lambda: defaultdict(dict))); any other fails the save, loudly.
_SSM_TAGS_FACTORY = "SimpleSystemManagerBackend.__init__.<locals>.<lambda>"


def _dict_of_dicts() -> defaultdict[str, dict[str, str]]:
    return defaultdict(dict)


def _tags_table(items: dict[str, Any]) -> defaultdict[str, Any]:
    return defaultdict(_dict_of_dicts, items)


def _private_key(der: bytes) -> Any:
    return serialization.load_der_private_key(der, password=None)


class _Pickler(pickle.Pickler):
    """Pickles moto's backends, reducing what moto holds that pickle can't."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            der = obj.private_bytes(serialization.Encoding.DER,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            return _private_key, (der,)
        if isinstance(obj, defaultdict) and getattr(obj.default_factory, "__qualname__",
                                                    None) == _SSM_TAGS_FACTORY:
            return _tags_table, (dict(obj),)
        return NotImplemented


def _backend_dicts() -> dict[tuple[str, str], Any]:
    """Every moto BackendDict in use, by (module, attribute) so a new process finds the
    same one."""
    from moto.core.base_backend import BackendDict

    found: dict[tuple[str, str], Any] = {}
    for backend_dict in list(BackendDict._instances):  # type: ignore[misc]
        module = sys.modules[backend_dict.backend.__module__]
        for name, value in vars(module).items():
            if value is backend_dict:
                found[(module.__name__, name)] = backend_dict
                break
    return found


def snapshot(extra: dict[str, Any]) -> bytes:
    """The pickled state of every backend in use, with builder's own `extra`; the
    caller holds the emulator's lock."""
    import moto

    backends = {key: {account: dict(regions) for account, regions in backend_dict.items()}
                for key, backend_dict in _backend_dicts().items()}
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(
        {"format": FORMAT, "moto": moto.__version__, "backends": backends, "extra": extra})
    return buffer.getvalue()


def restore(data: bytes) -> dict[str, Any]:
    """Put a snapshot's backends in place of the (empty) live ones; its `extra`.

    ValueError: a snapshot of another format or moto version.
    """
    import moto

    state = pickle.loads(data)  # noqa: S301 - our own file, in the root's 0700 .builder/local
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError("not a snapshot of this builder")
    if state.get("moto") != moto.__version__:
        raise ValueError(f"made with moto {state.get('moto')}, this is {moto.__version__}")
    for (module_name, attribute), accounts in state["backends"].items():
        live = getattr(importlib.import_module(module_name), attribute)
        for account, regions in accounts.items():
            account_backends = live[account]  # made (and registered) by moto
            for region, backend in regions.items():
                dict.__setitem__(account_backends, region, backend)
    extra: dict[str, Any] = state.get("extra") or {}
    return extra


class StateKeeper:
    """Saves the emulator's state after changes (a thread), on shutdown, and on demand."""

    def __init__(self, path: Path, set_aside: Path, lock: threading.RLock,
                 extra: Callable[[], dict[str, Any]], *,
                 interval_s: float = DEFAULT_INTERVAL_SECONDS, enabled: bool = True):
        self.enabled = enabled  # off: nothing loaded or saved (benchmarks compare)
        self.path = path
        self._set_aside = set_aside
        self._lock = lock
        self._extra = extra
        self._interval_s = interval_s
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="state-keeper", daemon=True)
        self.restore_error: str | None = None
        self.saves = 0
        self.last_save_seconds = 0.0

    def load(self) -> dict[str, Any]:
        """The saved state put in place (before serving); builder's extras, or {} when
        there is none or it can't be used (then it is moved aside and the reason kept)."""
        if not self.enabled:
            return {}
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            with self._lock:
                return restore(data)
        except Exception as exc:  # any unpickling failure: start empty, keep the file
            self.restore_error = f"{self.path}: {type(exc).__name__}: {exc}"
            log.exception("the saved state can't be used; starting empty")
            self.path.replace(self._set_aside)
            return {}

    def changed(self) -> None:
        """Something may have changed: save within the interval."""
        if self.enabled:
            self._dirty.set()

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and save what changed since the last save."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self._dirty.is_set():
            self.save()

    def save(self) -> dict[str, Any]:
        """Write the snapshot now; what was written."""
        started = time.monotonic()
        self._dirty.clear()
        with self._lock:
            data = snapshot(self._extra())
        partial = self.path.with_name(self.path.name + ".partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
        partial.replace(self.path)
        self.saves += 1
        self.last_save_seconds = round(time.monotonic() - started, 4)
        return {"path": str(self.path), "bytes": len(data), "seconds": self.last_save_seconds}

    def _loop(self) -> None:
        while not self._stopping.wait(self._interval_s):
            if self._dirty.is_set():
                try:
                    self.save()
                except Exception:  # the next change tries again; the log says why
                    log.exception("saving the emulator's state")
