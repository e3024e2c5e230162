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
from urllib.parse import urlsplit

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    Credentials,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from builder.aws.calls import RUNNING, checking
from builder.aws.partition import arn
from builder.config.models import Settings
from builder.errors import AwsError, RefusedError
from builder.redact import remember
from builder.strict import env_number

if TYPE_CHECKING:  # the stubs are for mypy only: never loaded when builder runs
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_codedeploy import CodeDeployClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_sts import STSClient
    from mypy_boto3_sts.type_defs import GetCallerIdentityResponseTypeDef

# Dummy source credentials for the local emulator: it issues real-looking role
# credentials per account from them, as STS would.
LOCAL_ACCESS_KEY = "AKIABUILDERLOCAL0000"
LOCAL_SECRET_KEY = "builder-local-secret"  # noqa: S105 - a fixed dummy for the emulator
SESSION_NAME = "builder"
# Seconds of an env role's session (AssumeRole DurationSeconds, 900 to 43200; default: the
# role's, 1 h). Tests shorten it (below 900 in local mode) to see credentials refresh.
SESSION_SECONDS_ENV = "BUILDER_AWS_SESSION_SECONDS"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class AwsTarget:
    """An env's AWS home: account, region and how to get in."""

    account_id: str
    region: str
    profile: str | None = None
    role_arn: str | None = None

    @property
    def signed_in_as(self) -> tuple[str, str | None, str | None]:
        """What the credentials depend on: the same in every region of the account."""
        return self.account_id, self.profile, self.role_arn

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
        # (account, profile, role) whose caller identity matched: checked once per run.
        self._identities: dict[tuple[str, str | None, str | None],
                               GetCallerIdentityResponseTypeDef] = {}
        self._identity_lock = threading.Lock()
        # botocore's service models, read once for every session of the run (each
        # session reading its own takes tenths of a second per account).
        self._models = botocore.loaders.create_loader()

    def botocore_session(self) -> botocore.session.Session:
        """A fresh botocore session that reads service models through the run's loader."""
        core = botocore.session.Session()
        core.register_component("data_loader", self._models)
        return core

    @property
    def is_local(self) -> bool:
        return self.local_endpoint is not None

    def env(self, target: AwsTarget) -> EnvAws:
        with self._lock:
            if target not in self._envs:
                # The regions of one account share its session (see EnvAws).
                sibling = next((env for known, env in self._envs.items()
                                if known.signed_in_as == target.signed_in_as), None)
                self._envs[target] = EnvAws(self, target, sibling)
            return self._envs[target]

    def role_for(self, target: AwsTarget) -> str | None:
        """The role assumed for an env; local mode always enters the env's account by one."""
        if target.role_arn or not self.is_local:
            return target.role_arn
        return arn(target.region, "iam", target.account_id, "role/builder", in_region=False)

    def caller_identity(self, env_aws: EnvAws) -> GetCallerIdentityResponseTypeDef:
        """Who the env's credentials are (STS GetCallerIdentity), asked once per account,
        profile and role."""
        target = env_aws.target
        key = (target.account_id, target.profile, target.role_arn)
        with self._identity_lock:
            if key not in self._identities:
                with translate("checking the AWS identity (sts get-caller-identity)"):
                    self._identities[key] = env_aws.sts().get_caller_identity()
            return self._identities[key]

    def check_identity(self, env_aws: EnvAws) -> None:
        """Refuse (exit 2) to work in another account than the env's `aws_account_id`:
        a profile or role of the wrong account would otherwise be written to while every
        message names the configured one."""
        target = env_aws.target
        actual = str(self.caller_identity(env_aws)["Account"])
        if actual != target.account_id:
            how = ", ".join(part for part in (
                f"role {self.role_for(target)}" if self.role_for(target) else "",
                f"profile {target.profile}" if target.profile else "") if part) or \
                "the default credentials"
            raise RefusedError(f"AWS identity mismatch: {how} is account {actual}, but "
                               f"aws_account_id is {target.account_id}; nothing was done")

    def client_config(self) -> Config:
        if self.is_local:
            # The emulator is on loopback and never throttles: a refused connection means
            # it is gone, and the command fails within seconds instead of backing off.
            return Config(retries={"mode": "standard", "max_attempts": 2},
                          user_agent_extra="builder", connect_timeout=2, read_timeout=30)
        return Config(retries={"mode": "adaptive", "max_attempts": 10},
                      user_agent_extra="builder", connect_timeout=10, read_timeout=60)


class EnvAws:
    """Clients of one env, all on one session (boto3 sessions are not thread-safe: the
    lock guards every use of the session; clients themselves are).

    The regions of one account (a multi-region env) share the session, its lock, its
    clients (by service and region) and its role credentials: botocore loads its service
    models once per session, which makes a session per region slow."""

    def __init__(self, aws: Aws, target: AwsTarget, sibling: EnvAws | None = None):
        self.aws = aws
        self.target = target
        self._clients: dict[tuple[str, str], Any]
        self._lock: threading.Lock
        self._fetcher: AssumeRoleCredentialFetcher | None  # when a role is assumed
        self._session: boto3.Session
        if sibling is not None:
            self._clients, self._lock = sibling._clients, sibling._lock
            self._fetcher, self._session = sibling._fetcher, sibling._session
            return
        self._clients, self._lock, self._fetcher = {}, threading.Lock(), None
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
    def client(self, service: Literal["iam"], region: str | None = None) -> IAMClient: ...
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
        shared, once the account's identity is checked: each call is counted in the call
        log."""
        self.aws.check_identity(self)
        return self._client(service, region)

    def sts(self) -> STSClient:
        """The STS client the identity check uses (no check of its own)."""
        client: STSClient = self._client("sts", None)
        return client

    def _client(self, service: str, region: str | None) -> Any:
        """The cached client, made on first use (no identity check: `sts()` needs it)."""
        key = (service, region or self.target.region)
        with self._lock:
            if key not in self._clients:
                make: Callable[..., Any] = self._session.client
                client = make(service, region_name=key[1], endpoint_url=self.aws.local_endpoint,
                              config=self.aws.client_config())
                client.meta.events.register("before-call.*.*", self.aws.call_log.record)
                if checking():
                    client.meta.events.register("before-call.*.*", RUNNING.check)
                    client.meta.events.register("before-send.*.*", RUNNING.mark)
                self._clients[key] = client
            return self._clients[key]

    def credentials_env(self) -> dict[str, str]:
        """Frozen credentials as environment variables, for Packer."""
        self.aws.check_identity(self)
        with translate("getting AWS credentials"):
            with self._lock:
                credentials = self._session.get_credentials()
            if credentials is None:
                raise NoCredentialsError()
            frozen = credentials.get_frozen_credentials()
        remember(frozen.secret_key, frozen.token)
        env = {"AWS_ACCESS_KEY_ID": str(frozen.access_key),
               "AWS_SECRET_ACCESS_KEY": str(frozen.secret_key),
               "AWS_REGION": self.target.region, "AWS_DEFAULT_REGION": self.target.region}
        if frozen.token:
            env["AWS_SESSION_TOKEN"] = frozen.token
        return env

    @property
    def assumes_role(self) -> bool:
        """Whether the env's credentials come from assuming a role (and so expire)."""
        return self._fetcher is not None

    def role_credentials(self) -> dict[str, object]:
        """The role's current credentials in the credential_process format (renewed
        once they are close to expiring), for a child that refreshes them itself."""
        if self._fetcher is None:
            raise AwsError("no role is assumed for this env: nothing to refresh")
        with translate("assuming the env's role"), self._lock:
            fetched = self._fetcher.fetch_credentials()
        remember(fetched["secret_key"], fetched["token"])
        return {"Version": 1, "AccessKeyId": fetched["access_key"],
                "SecretAccessKey": fetched["secret_key"], "SessionToken": fetched["token"],
                "Expiration": fetched["expiry_time"]}

    def _make_session(self) -> boto3.Session:
        local = self.aws.is_local
        base = boto3.Session(
            botocore_session=self.aws.botocore_session(),
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
        # AWS sessions last at least 15 minutes; the emulator's may be shorter (tests).
        seconds = env_number(SESSION_SECONDS_ENV, minimum=1 if self.aws.is_local else 900,
                             maximum=43200)
        config = self.aws.client_config()
        if seconds is not None and seconds < 900:
            config = config.merge(Config(parameter_validation=False))
        sts_maker = partial(base.client, region_name=self.target.region,
                            endpoint_url=self.aws.local_endpoint, config=config)

        def make_sts(service: str, **kwargs: Any) -> Any:
            client = sts_maker(service, **kwargs)
            client.meta.events.register("before-call.*.*", self.aws.call_log.record)
            return client

        extra: dict[str, str | int] = {"RoleSessionName": SESSION_NAME}
        if seconds is not None:
            extra["DurationSeconds"] = int(seconds)
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=make_sts, source_credentials=source, role_arn=role,
            extra_args=extra,
            # A short session (tests) is renewed at half its length, not 15 min before.
            expiry_window_seconds=min(15 * 60, int(seconds) // 2) if seconds else 15 * 60,
        )
        self._fetcher = fetcher
        credentials = DeferredRefreshableCredentials(
            method="assume-role", refresh_using=fetcher.fetch_credentials
        )
        core = self.aws.botocore_session()
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
        message = f"{doing}: {code}: {error.get('Message', exc)}"
        if code in _DENIED:
            message += _denied_hint(exc.operation_name)
        raise AwsError(message, code=code) from exc
    except (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError) as exc:
        url = urlsplit(str(exc.kwargs.get("endpoint_url", "")))
        if url.hostname in _LOOPBACK:  # only the local stack lives there
            raise AwsError(f"{doing}: the local stack at {url.scheme}://{url.netloc} stopped "
                           "responding; `builder local status`", code="LocalStackGone") from exc
        raise AwsError(f"{doing}: {exc}") from exc
    except NoCredentialsError as exc:
        raise AwsError(f"{doing}: no AWS credentials (set a profile, env vars or "
                       "aws_profile; or use --local)") from exc
    except BotoCoreError as exc:
        raise AwsError(f"{doing}: {exc}") from exc


# What AWS services answer when a policy does not allow a call.
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                     "UnauthorizedAccess", "AuthorizationError"})


def _denied_hint(operation: str) -> str:
    """Which builder step was refused, and where its permissions come from."""
    steps = RUNNING.names()
    needed = f"builder step {', '.join(steps)} needs {operation}; " if steps else ""
    return (f" ({needed}the role's policy does not allow it: compare it with "
            "`builder iam-policy`, or run `builder doctor`)")
