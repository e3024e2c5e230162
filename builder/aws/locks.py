"""Release locks in DynamoDB: one item per (app, env, comp), written with a conditional
put so that of two writers exactly one wins, whichever machine they run on.

The table (`builder-locks`, key `lock`, on-demand billing) lives in each env's own
account and region; builder makes it on first use (builder.release.lock).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from botocore.exceptions import ClientError

from builder.aws.session import translate
from builder.errors import AwsError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

TABLE = "builder-locks"
KEY = "lock"
_CONDITION_FAILED = "ConditionalCheckFailedException"
TABLE_MISSING = "ResourceNotFoundException"


@dataclass(frozen=True)
class LockItem:
    """The DynamoDB item that holds the release lock of one (app, env, comp)."""

    key: str  # "<app>/<env>/<comp>"
    owner: str  # user@host:pid, for people
    token: str  # unique per holder: only the holder's own release deletes the item
    started_at: str  # UTC, ISO 8601
    expires_at: int  # epoch seconds; after it anyone may take the lock

    def to_item(self) -> dict[str, AttributeValueTypeDef]:
        return {KEY: {"S": self.key}, "owner": {"S": self.owner}, "token": {"S": self.token},
                "started_at": {"S": self.started_at},
                "expires_at": {"N": str(self.expires_at)}}

    @classmethod
    def from_item(cls, item: Mapping[str, AttributeValueTypeDef]) -> LockItem:
        def text(name: str) -> str:
            return str(item.get(name, {}).get("S", "?"))

        return cls(text(KEY), text("owner"), text("token"), text("started_at"),
                   int(item.get("expires_at", {}).get("N", "0")))


def put(dynamodb: DynamoDBClient, lock: LockItem, *, now: int, force: bool = False
        ) -> LockItem | None:
    """Write `lock` unless another holder's unexpired lock is there.

    Returns None when written without taking anyone's lock, else the other holder: the
    one that kept the lock, or (force) the one whose lock was overwritten. A missing
    table is an AwsError with code ResourceNotFoundException.
    """
    with translate(f"taking the release lock {lock.key}"):
        if force:
            answer = dynamodb.put_item(TableName=TABLE, Item=lock.to_item(),
                                       ReturnValues="ALL_OLD")
            old = answer.get("Attributes")
            return LockItem.from_item(old) if old else None
        try:
            dynamodb.put_item(
                TableName=TABLE, Item=lock.to_item(),
                ConditionExpression="attribute_not_exists(#key) OR #expires < :now",
                ExpressionAttributeNames={"#key": KEY, "#expires": "expires_at"},
                ExpressionAttributeValues={":now": {"N": str(now)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != _CONDITION_FAILED:
                raise
            # ReturnValuesOnConditionCheckFailure puts the holder's item in the error.
            holder = cast("Mapping[str, AttributeValueTypeDef] | None",
                          exc.response.get("Item"))
            return LockItem.from_item(holder or {})
    return None


def delete(dynamodb: DynamoDBClient, lock: LockItem) -> bool:
    """Remove our own lock; False when it is no longer ours (broken by someone else)."""
    try:
        with translate(f"releasing the release lock {lock.key}"):
            dynamodb.delete_item(
                TableName=TABLE, Key={KEY: {"S": lock.key}},
                ConditionExpression="#token = :token",
                ExpressionAttributeNames={"#token": "token"},
                ExpressionAttributeValues={":token": {"S": lock.token}})
    except AwsError as exc:
        if exc.code == _CONDITION_FAILED:
            return False
        raise
    return True


def create_table(dynamodb: DynamoDBClient) -> None:
    """Make the lock table and wait until it takes writes; another process making it at
    the same moment is fine."""
    try:
        with translate(f"making the DynamoDB table {TABLE}"):
            dynamodb.create_table(
                TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
                Tags=[{"Key": "builder:purpose", "Value": "release locks"}])
    except AwsError as exc:
        if exc.code != "ResourceInUseException":
            raise
    with translate(f"waiting for the DynamoDB table {TABLE}"):
        dynamodb.get_waiter("table_exists").wait(
            TableName=TABLE, WaiterConfig={"Delay": 2, "MaxAttempts": 60})
