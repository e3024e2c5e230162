"""The one place that makes AWS clients: a session per env, assume-role, adaptive
retries, the local endpoint, and a count of every call made.

Local mode uses the same assume-role path as real multi-account AWS; only the endpoint
and the (dummy) source credentials differ.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    Credentials,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from builder.config.models import Settings
from builder.errors import AwsError

if TYPE_CHECKING:  # the stubs are for mypy only: never loaded when builder runs
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_codedeploy import CodeDeployClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_sts import STSClient

# Dummy source credentials for the local emulator: it issues real-looking role
# credentials per account from them, as STS would.
LOCAL_ACCESS_KEY = "AKIABUILDERLOCAL0000"
LOCAL_SECRET_KEY = "builder-local-secret"  # noqa: S105 - a fixed dummy for the emulator
SESSION_NAME = "builder"


@dataclass(frozen=True)
class AwsTarget:
    """An env's AWS home: account, region and how to get in."""

    account_id: str
    region: str
    profile: str | None = None
    role_arn: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> AwsTarget:
        return cls(settings.aws_account_id, settings.aws_region, settings.aws_profile,
                   settings.aws_role_arn)


@dataclass
class CallLog:
    """Counts AWS API calls by "service.Operation" (tests and `make bench` read it)."""

    counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.counts[f"{model.service_model.service_name}.{model.name}"] += 1

    def total(self, *, excluding: tuple[str, ...] = ()) -> int:
        return sum(n for name, n in self.counts.items() if name not in excluding)


class Aws:
    """Hands out clients per env; one instance per command run."""

    def __init__(self, *, local_endpoint: str | None = None, call_log: CallLog | None = None):
        self.local_endpoint = local_endpoint
        self.call_log = call_log or CallLog()
        self._envs: dict[AwsTarget, EnvAws] = {}
        self._lock = threading.Lock()

    @property
    def is_local(self) -> bool:
        return self.local_endpoint is not None

    def env(self, target: AwsTarget) -> EnvAws:
        with self._lock:
            if target not in self._envs:
                self._envs[target] = EnvAws(self, target)
            return self._envs[target]

    def role_for(self, target: AwsTarget) -> str | None:
        """The role assumed for an env; local mode always enters the env's account by one."""
        if target.role_arn or not self.is_local:
            return target.role_arn
        return f"arn:aws:iam::{target.account_id}:role/builder"

    def client_config(self) -> Config:
        return Config(retries={"mode": "adaptive", "max_attempts": 10},
                      user_agent_extra="builder", connect_timeout=10, read_timeout=60)


class EnvAws:
    """Clients of one env, all on one session (boto3 sessions are not thread-safe: the
    lock guards every use of the session; clients themselves are)."""

    def __init__(self, aws: Aws, target: AwsTarget):
        self.aws = aws
        self.target = target
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._session = self._make_session()

    @property
    def region(self) -> str:
        return self.target.region

    @property
    def account_id(self) -> str:
        return self.target.account_id

    @overload
    def client(self, service: Literal["autoscaling"], region: str | None = None
               ) -> AutoScalingClient: ...
    @overload
    def client(self, service: Literal["codedeploy"], region: str | None = None
               ) -> CodeDeployClient: ...
    @overload
    def client(self, service: Literal["dynamodb"], region: str | None = None
               ) -> DynamoDBClient: ...
    @overload
    def client(self, service: Literal["ec2"], region: str | None = None) -> EC2Client: ...
    @overload
    def client(self, service: Literal["kms"], region: str | None = None) -> KMSClient: ...
    @overload
    def client(self, service: Literal["s3"], region: str | None = None) -> S3Client: ...
    @overload
    def client(self, service: Literal["ssm"], region: str | None = None) -> SSMClient: ...
    @overload
    def client(self, service: Literal["sts"], region: str | None = None) -> STSClient: ...
    def client(self, service: str, region: str | None = None) -> Any:
        """The env's client of `service` (in `region`, default the env's), made once and
        shared: each call it makes is counted in the call log."""
        key = (service, region or self.target.region)
        with self._lock:
            if key not in self._clients:
                make: Callable[..., Any] = self._session.client
                client = make(service, region_name=key[1], endpoint_url=self.aws.local_endpoint,
                              config=self.aws.client_config())
                client.meta.events.register("before-call.*.*", self.aws.call_log.record)
                self._clients[key] = client
            return self._clients[key]

    def credentials_env(self) -> dict[str, str]:
        """Frozen credentials as environment variables, for Packer."""
        with translate("getting AWS credentials"):
            with self._lock:
                credentials = self._session.get_credentials()
            if credentials is None:
                raise NoCredentialsError()
            frozen = credentials.get_frozen_credentials()
        env = {"AWS_ACCESS_KEY_ID": str(frozen.access_key),
               "AWS_SECRET_ACCESS_KEY": str(frozen.secret_key),
               "AWS_REGION": self.target.region, "AWS_DEFAULT_REGION": self.target.region}
        if frozen.token:
            env["AWS_SESSION_TOKEN"] = frozen.token
        return env

    def _make_session(self) -> boto3.Session:
        local = self.aws.is_local
        base = boto3.Session(
            profile_name=None if local else self.target.profile,
            region_name=self.target.region,
            aws_access_key_id=LOCAL_ACCESS_KEY if local else None,
            aws_secret_access_key=LOCAL_SECRET_KEY if local else None,
        )
        role = self.aws.role_for(self.target)
        if role is None:
            return base
        source = base.get_credentials()
        if source is None:
            raise AwsError(f"no AWS credentials to assume {role} with"
                           + (f" (profile {self.target.profile})" if self.target.profile else ""))
        sts_maker = partial(base.client, region_name=self.target.region,
                            endpoint_url=self.aws.local_endpoint, config=self.aws.client_config())

        def make_sts(service: str, **kwargs: Any) -> Any:
            client = sts_maker(service, **kwargs)
            client.meta.events.register("before-call.*.*", self.aws.call_log.record)
            return client

        fetcher = AssumeRoleCredentialFetcher(
            client_creator=make_sts, source_credentials=source, role_arn=role,
            extra_args={"RoleSessionName": SESSION_NAME},
        )
        credentials = DeferredRefreshableCredentials(
            method="assume-role", refresh_using=fetcher.fetch_credentials
        )
        core = botocore.session.Session()
        core.get_component("credential_provider").insert_before(
            "env", _FixedProvider(credentials))
        return boto3.Session(botocore_session=core, region_name=self.target.region)


class _FixedProvider(CredentialProvider):
    """Hands botocore the env's assume-role credentials ahead of its default chain."""

    METHOD = "builder-assume-role"

    def __init__(self, credentials: Credentials):
        super().__init__()
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials


@contextmanager
def translate(doing: str) -> Iterator[None]:
    """botocore errors become AwsError here, once, with what was being done."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        raise AwsError(f"{doing}: {code}: {error.get('Message', exc)}", code=code) from exc
    except NoCredentialsError as exc:
        raise AwsError(f"{doing}: no AWS credentials (set a profile, env vars or "
                       "aws_profile; or use --local)") from exc
    except BotoCoreError as exc:
        raise AwsError(f"{doing}: {exc}") from exc
