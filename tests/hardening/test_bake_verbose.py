"""A bake at `-v` with the vault password in SSM: the debug log shows botocore's
GetParameter exchange and Ansible's run, and neither the password, the vaulted value nor
any credential reaches the output or `.builder/`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bake.test_secrets import vaulted  # noqa: F401 - the fixture
from tests.conftest import run_builder
from tests.hardening.test_verbose_secrets import leaks
from tests.leaks import files_containing

pytestmark = [pytest.mark.slow, pytest.mark.local]


def test_a_bake_at_v_leaks_no_secret(bake_root: Path, vaulted) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    password, token, password_file = vaulted
    common = bake_root / "vars/demo/dev/common.yml"
    original = common.read_text()
    common.write_text(original + "vault_password_ssm_parameter: /demo/dev/vault-password\n")
    try:
        up = run_builder("local", "up", root=bake_root,
                         env={"BUILDER_LOCAL_VAULT_PASSWORD_FILE": str(password_file)})
        assert up.returncode == 0, up.stderr
        done = run_builder("-v", "--local", "bake", "demo", "dev", "worker", "--force",
                           root=bake_root)
    finally:
        common.write_text(original)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "GetParameter" in output  # the SSM exchange was logged, masked
    assert password not in output and token not in output
    assert not leaks(output), leaks(output)[:3]
    assert files_containing(bake_root / ".builder", [password.encode(), token.encode()]) == []
