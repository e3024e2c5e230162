"""blue_green_existing: a CodeDeploy blue/green deployment between two standing Auto
Scaling groups (a DISCOVER_EXISTING group), so no group is ever renamed.

One group of the pair serves (the one the deployment group names, or the one with
instances), the other stands idle at size 0. A release points the idle one at the new
launch-template version, gives it the serving one's sizes and deploys onto it
(targetInstances); CodeDeploy moves the traffic and terminates the old instances, and
builder then sizes the old group to 0 so it doesn't launch them again: it is the idle
one of the next release. A failed deployment leaves the traffic where it was; the idle
group goes back to 0 and to its version.

The pair is `asg_pair`, or the two groups tagged builder:slot with the comp's
builder:app/env/comp tags. Only sizes and launch-template versions change, which a
Terraform configuration ignores (`ignore_changes`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from builder.aws import fleet, images
from builder.aws.codedeploy import DeploymentGroup
from builder.aws.fleet import AsgLaunch, TemplateVersion
from builder.config.models import DeployStrategy
from builder.errors import OperationFailed, RefusedError
from builder.release import deploy
from builder.release.rollout import DeployTarget, Run

if TYPE_CHECKING:
    from mypy_boto3_codedeploy.type_defs import RevisionLocationTypeDef


class ExistingPair(deploy.CopyAsg):
    """blue_green_existing: CodeDeploy deploys onto the idle group of the pair, moves the
    traffic to it and retires the serving one, which builder sizes to 0."""

    strategy: ClassVar[DeployStrategy] = DeployStrategy.BLUE_GREEN_EXISTING
    noun: ClassVar[str] = "deployment"

    def __init__(self, target: DeployTarget, revision: RevisionLocationTypeDef | None):
        super().__init__(target, revision)
        self._template_id = ""
        self._idle: AsgLaunch | None = None  # as prepare found it

    def prepare(self, default: TemplateVersion) -> AsgLaunch:
        group = self._read_group()
        self._template_id = default.template_id
        serving, self._idle = _serving_and_idle(self.target, group, default.template_id)
        return serving

    def start(self, asg: AsgLaunch, new: TemplateVersion, description: str) -> Run:
        """Size the idle group like the serving one `asg`, at `new`, and deploy onto it;
        it goes back (to 0 and its version) if CodeDeploy refuses."""
        idle, group = self._idle, self._group
        assert idle is not None and group is not None and self._revision is not None
        if not idle.idle:
            raise RefusedError(
                f"{self.target.subject}: Auto Scaling group {idle.name}, the idle one of the "
                f"pair, runs {idle.instances} instances (desired {idle.desired}); a release "
                f"deploys onto fresh instances: size it to 0 first")
        fleet.size_asg(self.target.autoscaling, idle.name, min_size=asg.min_size,
                       desired=asg.desired, max_size=asg.max_size,
                       template_id=new.template_id, version_spec=str(new.number))
        try:
            deployment_id = deploy.start_deployment(self.target, group, self._revision,
                                                    description, onto_asgs=[idle.name])
        except OperationFailed:  # as it was: idle, at its version
            fleet.size_asg(self.target.autoscaling, idle.name, min_size=idle.min_size,
                           desired=idle.desired, max_size=idle.max_size,
                           template_id=idle.template_id, version_spec=idle.version)
            raise
        return Run(deployment_id, "Created")

    def launched(self, new: TemplateVersion) -> tuple[str, str]:
        """The group serving now and the AMI it launches; when that is `new`'s, the other
        group (CodeDeploy has terminated its instances) goes to size 0."""
        serving, other = _serving_and_idle(self.target, deploy.current_group(self.target),
                                           self._template_id)
        image = deploy.launched_image(self.target, serving, new)
        if image == new.image_id and (other.min_size or other.desired):
            _retire(self.target, other, other.version)
        return serving.name, image

    def roll_back(self, new: TemplateVersion, back: str | None) -> tuple[str, list[str]]:
        """The traffic stays (or is) where CodeDeploy left it: the other group of the pair
        goes to 0 and off `new` (to the version it had, else `back`); a serving group on
        `new` (a deployment that succeeded but wasn't verified) is pointed at `back`."""
        serving, other = _serving_and_idle(self.target, deploy.current_group(self.target),
                                           self._template_id)
        done = []
        if _on(serving, new) and back and back != serving.version:
            fleet.point_asg(self.target.autoscaling, serving.name, serving.template_id, back)
            done.append(f"Auto Scaling group {serving.name} back to version {back}")
        started = self._idle  # as this run found it, before it was sized and pointed
        earlier = (started.version if started and started.name == other.name
                   and not _on(started, new) else back)
        if not other.idle or other.min_size or _on(other, new):
            version = earlier if _on(other, new) and earlier else other.version
            _retire(self.target, other, version)
            done.append(f"Auto Scaling group {other.name} back to size 0"
                        + (f" and version {version}" if version != other.version else ""))
        return serving.name, done


def _on(asg: AsgLaunch, new: TemplateVersion) -> bool:
    return asg.template_id == new.template_id and asg.version == str(new.number)


def _retire(target: DeployTarget, asg: AsgLaunch, version: str) -> None:
    """Size 0 (its maximum kept), launching from `version` when it comes back."""
    moved = version != asg.version
    fleet.size_asg(target.autoscaling, asg.name, min_size=0, desired=0, max_size=asg.max_size,
                   template_id=asg.template_id if moved else "",
                   version_spec=version if moved else "")


def _pair(target: DeployTarget) -> list[AsgLaunch]:
    """The comp's two groups: asg_pair's, else the two tagged builder:slot for the comp;
    refused (exit 2, naming asg_pair) unless there are exactly two."""
    resolved = target.resolved
    names = resolved.settings.asg_pair
    if names:
        found = {asg.name: asg for asg in fleet.asgs(target.autoscaling, names)}
        missing = [name for name in names if name not in found]
        if missing:
            raise resolved.problem("asg_pair", f"no Auto Scaling group {', '.join(missing)} "
                                               f"in {target.where}")
        return [found[name] for name in names]
    combo = resolved.combo
    tagged = fleet.asgs(target.autoscaling, tags={
        images.TAG_APP: combo.app, images.TAG_ENV: combo.env, images.TAG_COMP: combo.comp},
        tag_keys=[images.TAG_SLOT])
    if len(tagged) != 2:
        raise resolved.problem(
            "asg_pair", f"unset, and {len(tagged)} Auto Scaling groups in {target.where} "
            f"are tagged {images.TAG_SLOT} for {combo} (blue_green_existing needs two): "
            "set asg_pair: [NAME_A, NAME_B], or tag the two groups")
    return sorted(tagged, key=lambda asg: asg.name)


def _serving_and_idle(target: DeployTarget, group: DeploymentGroup,
                      template_id: str) -> tuple[AsgLaunch, AsgLaunch]:
    """The pair's serving group (the deployment group's current one; when it names
    none, the one that runs instances) and the other; both must launch from the comp's
    launch template."""
    pair = _pair(target)
    resolved = target.resolved
    for asg in pair:
        if asg.template_id != template_id:
            raise resolved.problem(
                "asg_pair", f"Auto Scaling group {asg.name} launches from "
                f"{asg.template_id or 'no launch template'}, not the comp's "
                f"{resolved.settings.launch_template_name} ({template_id})")
    listed = [asg for asg in pair if asg.name in group.asg_names]
    running = [asg for asg in pair if not asg.idle]
    # A group that names no Auto Scaling group yet: the one with instances serves.
    serving = running if not group.asg_names else listed
    if len(serving) != 1:
        names = " and ".join(asg.name for asg in pair)
        raise resolved.problem(
            "asg_pair", f"can't tell which of {names} serves: {group.application}/"
            f"{group.name} lists {', '.join(group.asg_names) or 'none'}, and "
            f"{len(running)} of the pair run instances")
    first, second = pair
    return (first, second) if serving[0] is first else (second, first)
