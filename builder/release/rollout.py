"""The seam between a release and its fleet: a `Rollout` takes a new launch-template
version to the instances, one class per `deploy_strategy`.

A release does what every strategy shares (choose the AMI, the lock, the launch-template
version and default, tagging, the record) and asks its Rollout for the rest: check the
fleet's configuration before anything changes, find a rollout an earlier run started,
start one, wait for it, read back what the fleet launches, put the fleet back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from builder.aws.codedeploy import FailedEvent
from builder.aws.fleet import AsgLaunch, TemplateVersion
from builder.config.layers import ResolvedVars
from builder.config.models import DeployStrategy
from builder.interrupts import Cancel
from builder.output import ProgressFn
from builder.project import Project

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_codedeploy import CodeDeployClient
    from mypy_boto3_ec2 import EC2Client

    from builder.aws.images import Image


@dataclass(frozen=True)
class DeployTarget:
    """One combo's release target: its env's clients and the names its settings give."""

    resolved: ResolvedVars
    ec2: EC2Client
    autoscaling: AutoScalingClient
    codedeploy: CodeDeployClient

    @classmethod
    def of(cls, project: Project, resolved: ResolvedVars) -> DeployTarget:
        env_aws = project.env_aws(resolved)
        return cls(resolved, env_aws.client("ec2"), env_aws.client("autoscaling"),
                   env_aws.client("codedeploy"))

    @property
    def subject(self) -> str:
        return str(self.resolved.combo)

    @property
    def where(self) -> str:
        settings = self.resolved.settings
        return f"{settings.aws_account_id} {settings.aws_region}"


@dataclass(frozen=True)
class Run:
    """One rollout as AWS reports it (a CodeDeploy deployment, an instance refresh)."""

    id: str
    status: str
    done: bool = False
    succeeded: bool = False
    error: str = ""
    checkpoints: tuple[int, ...] = ()  # an instance refresh's checkpoints reached (percent)


@dataclass(frozen=True)
class Ended:
    """How waiting for a rollout ended: its last state, a timeout, the failed event."""

    run: Run
    timed_out: bool
    failed_event: FailedEvent | None = None  # CodeDeploy's, of a deployment that failed


class Rollout(Protocol):
    """How one strategy moves a fleet to a launch-template version, and back."""

    strategy: ClassVar[DeployStrategy]
    noun: ClassVar[str]  # what a run is called in messages: "deployment", ...

    def prepare(self, default: TemplateVersion) -> AsgLaunch:
        """Read the fleet before anything changes; refuse (exit 2, saying what to set)
        when its configuration disagrees with the strategy. Returns the Auto Scaling
        group serving now."""
        ...

    @property
    def revision(self) -> str | None:
        """What is deployed onto the instances besides the AMI (CodeDeploy's revision)."""
        ...

    def earlier(self, image: Image) -> Run | None:
        """A rollout of `image` an earlier run started, running or ended unseen."""
        ...

    def start(self, asg: AsgLaunch, new: TemplateVersion, description: str) -> Run:
        """Start rolling `new` out; whatever it changed goes back if it can't start."""
        ...

    def wait(self, run_id: str, *, timeout_s: float, progress: ProgressFn,
             cancel: Cancel) -> Ended:
        """Until the run ends (stopped on timeout); Ctrl-C raises Interrupted and
        leaves it running."""
        ...

    def launched(self, new: TemplateVersion) -> tuple[str, str]:
        """After success: the serving Auto Scaling group's name and the AMI it launches."""
        ...

    def roll_back(self, new: TemplateVersion, back: str | None) -> tuple[str, list[str]]:
        """The fleet off `new` (to version `back`) after a failure: the serving group's
        name and what was done."""
        ...


# What a release's launch-template version description remembers (after the AMI):
# the default before it and the version the ASG launched then.
REMEMBERED = re.compile(r"previous default (?P<previous>\d+)(?:; asg version (?P<asg>\S+))?")


def description(ami_id: str) -> str:
    """How a release's rollout starts its description: a re-run finds it by this."""
    return f"builder release of {ami_id} "
