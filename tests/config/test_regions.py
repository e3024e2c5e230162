"""Multi-region envs in config: aws_regions instead of aws_region, kms_key_id per region,
and the mistakes refused at their file:line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from builder.config.models import KmsKeys
from builder.errors import InputError
from tests.config.test_config import loader, repo, resolve_problems, write

__all__ = ["repo"]  # the fixture

THREE = "aws_regions: [eu-central-1, us-east-1, us-west-2]\n"


def test_aws_regions_gives_the_bake_region_and_every_region(repo: Path) -> None:
    write(repo, "vars/shop/common/common.yml", "source_ami: ami-0123456789abcdef0\n")
    write(repo, "vars/shop/dev/web.yml", THREE + "kms_key_id:\n  eu-central-1: alias/a\n"
          "  us-east-1: alias/b\n  us-west-2: alias/c\n")
    settings = loader(repo).resolve("shop", "dev", "web").settings
    assert settings.aws_region == settings.bake_region == "eu-central-1"
    assert settings.aws_regions == ("eu-central-1", "us-east-1", "us-west-2")
    assert settings.kms_key == "alias/a"
    other = settings.in_region("us-west-2")
    assert (other.aws_region, other.kms_key, other.bake_region) == (
        "us-west-2", "alias/c", "eu-central-1")
    with pytest.raises(InputError, match="ap-south-1: not a region of this env"):
        settings.in_region("ap-south-1")


def test_one_region_is_a_one_region_list(repo: Path) -> None:
    write(repo, "vars/shop/dev/web.yml", "kms_key_id: alias/one\n")
    settings = loader(repo).resolve("shop", "dev", "web").settings
    assert settings.aws_regions == ("eu-west-1",)
    assert settings.kms_key_id == KmsKeys(every_region="alias/one")
    assert settings.kms_key == "alias/one"


def test_a_string_key_serves_every_region(repo: Path) -> None:
    write(repo, "vars/shop/common/common.yml", "source_ami: ami-0123456789abcdef0\n")
    write(repo, "vars/shop/dev/web.yml", THREE + "kms_key_id: alias/everywhere\n")
    settings = loader(repo).resolve("shop", "dev", "web").settings
    assert {settings.in_region(r).kms_key for r in settings.aws_regions} == {"alias/everywhere"}


@pytest.mark.parametrize(("text", "expected", "line"), [
    ("port: 1\naws_regions: [us-east-1, eu-west-2]\n",
     "aws_regions: set one of aws_region and aws_regions, not both", 2),
    (THREE + "kms_key_id:\n  eu-central-1: alias/a\n  us-east-1: alias/b\n",
     "kms_key_id: names no key for us-west-2", 2),
    (THREE + "kms_key_id:\n  eu-central-1: alias/a\n  us-east-1: alias/b\n"
     "  us-west-2: alias/c\n  ap-south-1: alias/d\n",
     "kms_key_id: names ap-south-1, not a region of this env", 2),
    ("aws_regions: [eu-west-1, eu-west-1]\n",
     "aws_regions: ['eu-west-1', 'eu-west-1'] names a region twice", 1),
    ("aws_regions: []\n", "aws_regions: must be a non-empty list of regions", 1),
    # An env is one account: its regions are in one partition, and each region's key
    # is an ARN of that partition.
    ("aws_regions: [eu-central-1, cn-north-1]\n",
     "aws_regions: mixes partitions (aws, aws-cn)", 1),
    ("aws_regions: [cn-north-1, cn-northwest-1]\nkms_key_id:\n"
     "  cn-north-1: arn:aws-cn:kms:cn-north-1:111111111111:key/a\n"
     "  cn-northwest-1: arn:aws:kms:cn-northwest-1:111111111111:key/b\n",
     "kms_key_id: is an ARN of partition aws, but region cn-northwest-1 is in partition "
     "aws-cn", 2),
])
def test_region_mistakes_are_refused_at_their_line(repo: Path, text: str, expected: str,
                                                   line: int) -> None:
    if "kms_key_id" in text:  # the common file's aws_region would be a second problem
        write(repo, "vars/shop/common/common.yml", "source_ami: ami-0123456789abcdef0\n")
    write(repo, "vars/shop/dev/web.yml", text)
    problems = resolve_problems(repo)
    assert any(p.startswith(f"vars/shop/dev/web.yml:{line}: {expected}") for p in problems), \
        problems
    with pytest.raises(InputError):  # exit 2
        loader(repo).resolve("shop", "dev", "web")


def test_neither_region_key(repo: Path) -> None:
    write(repo, "vars/shop/common/common.yml", "source_ami: ami-0123456789abcdef0\n")
    assert any("aws_region: required (or aws_regions, a list)" in p
               for p in resolve_problems(repo))


def test_cli_exits_2_naming_the_file_and_line(repo: Path, cli: Callable[..., Any]) -> None:
    write(repo, "vars/shop/dev/web.yml", "aws_regions: [us-east-1]\n")
    result = cli("vars", "shop", "dev", "web", root=repo)
    assert result.exit_code == 2
    assert "vars/shop/dev/web.yml:1: aws_regions: set one of aws_region and aws_regions" \
        in result.output
