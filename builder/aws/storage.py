"""S3 objects of the records bucket (`records_bucket`): the typed calls that keep build
and release records where any machine can read them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from builder.aws.session import translate
from builder.errors import AwsError, InputError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_ABSENT = ("NoSuchKey", "404", "NoSuchBucket")


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` as (bucket, key)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise InputError(f"{uri!r}: expected s3://BUCKET/KEY")
    return bucket, key


def put(s3: S3Client, uri: str, body: bytes, content_type: str = "application/json") -> None:
    """Write one object."""
    bucket, key = split_uri(uri)
    with translate(f"writing {uri}"):
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


def get(s3: S3Client, uri: str) -> bytes | None:
    """One object's bytes, or None when it (or its bucket) is not there."""
    bucket, key = split_uri(uri)
    try:
        with translate(f"reading {uri}"):
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except AwsError as exc:
        if exc.code in _ABSENT:
            return None
        raise


def delete(s3: S3Client, uri: str) -> None:
    """Remove one object (absent is fine)."""
    bucket, key = split_uri(uri)
    with translate(f"removing {uri}"):
        s3.delete_object(Bucket=bucket, Key=key)
