"""`-v` shows botocore's debug log, and that log carries credentials and secrets: STS
role credentials, the security token header, decrypted SSM parameters. None of it may
reach the output."""

from __future__ import annotations

import io
import logging
import re
import uuid
from collections.abc import Iterator

import pytest

from builder.config.models import Combo
from builder.project import Project
from builder.redact import install
from tests.conftest import run_builder
from tests.release.emulated import make_ami

pytestmark = pytest.mark.local

UNMASKED = [
    re.compile(r"<(SecretAccessKey|SessionToken)>(?!\*\*\*<)"),
    re.compile(r"""["'](SecretAccessKey|SessionToken)["']\s*:\s*b?["'](?!\*\*\*)"""),
    re.compile(r"""X-Amz-Security-Token['"]?\s*:\s*b?['"](?!\*\*\*)"""),
    re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"),
]


def leaks(text: str) -> list[str]:
    return [match.group(0) for pattern in UNMASKED for match in pattern.finditer(text)]


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """builder's -v handler, in this process: every logger at DEBUG into a buffer."""
    stream = io.StringIO()
    handler = install(logging.StreamHandler(stream))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_an_ssm_secure_string_never_reaches_the_debug_log(
        local_stack: Project, debug_log: io.StringIO) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    ssm = local_stack.env_aws(local_stack.resolve("demo", "dev", "app")).client("ssm")
    name = f"/hardening/{uuid.uuid4().hex}"
    ssm.put_parameter(Name=name, Value=canary, Type="SecureString")
    got = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    assert got == canary
    log = debug_log.getvalue()
    assert "GetParameter" in log and '"Value":"***"' in log.replace(" ", "")
    assert canary not in log
    assert not leaks(log), leaks(log)[:3]


def test_release_and_promote_at_v_leak_no_credentials(local_stack: Project) -> None:
    root = local_stack.root
    dev = make_ami(local_stack, Combo("demo", "dev", "app"))
    released = run_builder("-v", "--local", "release", "demo", "dev", "app", "--ami", dev,
                           root=root)
    assert released.returncode == 0, released.stderr[-2000:]
    staging = make_ami(local_stack, Combo("demo", "staging", "app"))
    verified = run_builder("-v", "--local", "release", "demo", "staging", "app", "--ami",
                           staging, root=root)
    assert verified.returncode == 0, verified.stderr[-2000:]
    promoted = run_builder("-v", "--local", "promote", "demo", "app", "--to", "prod",
                           root=root)
    assert promoted.returncode == 0, promoted.stderr[-2000:]
    for done in (released, verified, promoted):
        output = done.stdout + done.stderr
        # The debug log did show the STS exchange (so the masking had work to do).
        assert "AssumeRole" in output and "<SecretAccessKey>***</SecretAccessKey>" in output
        assert not leaks(output), leaks(output)[:3]
