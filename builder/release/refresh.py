"""instance_refresh: an Auto Scaling instance refresh replaces the instances of the
comp's one Auto Scaling group, in place, with ones of the new launch-template version;
for in-place CodeDeploy groups and fleets without CodeDeploy.

The group is `auto_scaling_group`, or the in-place deployment group's own when the comp
has one (a blue/green group is refused, naming the strategy that fits). The refresh
names the new version by number (DesiredConfiguration: the group launches it once the
refresh succeeds) and rolls back by itself on failure (AutoRollback), which AWS allows
only when the group's own version is a number too: a group on `$Default`/`$Latest` is
pinned first to the number it launched before the release. An in-place CodeDeploy group
on the ASG goes on installing its revision on each new instance.

A refresh has no description: a re-run knows one of its release by the version it
names, whose description names the AMI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from builder.aws import codedeploy, fleet, images
from builder.aws.codedeploy import DeploymentGroup
from builder.aws.fleet import AsgLaunch, Refresh, TemplateVersion
from builder.config.models import DeployStrategy
from builder.errors import AwsError, InputError, Interrupted, OperationFailed, TimedOut
from builder.interrupts import Cancel
from builder.output import ProgressFn
from builder.polling import poll_until
from builder.release import deploy, rollout
from builder.release.rollout import DeployTarget, Ended, Run

if TYPE_CHECKING:
    from mypy_boto3_codedeploy.type_defs import RevisionLocationTypeDef

    from builder.aws.images import Image

# What a wait calls on every poll (their number depends on how long the refresh takes).
STATUS_POLLS = ("autoscaling.DescribeInstanceRefreshes",)
# After a timeout: how long Auto Scaling gets to end the refresh (rolled back or cancelled).
STOP_WAIT_S = 600.0
_PINNABLE = ("$Default", "$Latest")


class InstanceRefresh:
    """instance_refresh: the group's instances replaced in place, in batches that keep
    `refresh_min_healthy_percent` in service, pausing at `refresh_checkpoints`."""

    strategy: ClassVar[DeployStrategy] = DeployStrategy.INSTANCE_REFRESH
    noun: ClassVar[str] = "instance refresh"

    def __init__(self, target: DeployTarget, revision: RevisionLocationTypeDef | None):
        if revision is not None:
            raise InputError(f"--revision needs a CodeDeploy deployment, but {target.subject} "
                             "releases by instance refresh (deploy_strategy: "
                             "instance_refresh); an in-place group deploys its revision "
                             "itself")
        self.target = target
        self._group: DeploymentGroup | None = None
        self._asg = ""
        self._default: TemplateVersion | None = None
        self._last: Refresh | None = None
        self._checkpoints: set[int] = set()  # reached, as far as this run has seen

    def _run(self, state: Refresh) -> Run:
        self._last = state
        self._checkpoints.update(_reached(state))
        return Run(state.id, state.status, done=state.done,
                   succeeded=state.status == fleet.REFRESH_SUCCESSFUL, error=state.reason,
                   checkpoints=tuple(sorted(self._checkpoints)))

    @property
    def revision(self) -> str | None:
        group = self._group
        return codedeploy.revision_text(group.target_revision) if (
            group and group.target_revision) else None

    def prepare(self, default: TemplateVersion) -> AsgLaunch:
        settings = self.target.resolved.settings
        self._default = default
        group = deploy.existing_group(self.target)
        name = settings.auto_scaling_group
        if group is not None:
            self._group = deploy.fitting(self.target, group, self.strategy)
            if len(group.asg_names) == 1:
                name = group.asg_names[0]
            elif group.asg_names and name not in group.asg_names:
                raise self.target.resolved.problem(
                    "auto_scaling_group",
                    f"{name} is not one of the Auto Scaling groups of {group.application}/"
                    f"{group.name} ({', '.join(group.asg_names)}): set it to the one to "
                    "refresh")
        try:
            asg = fleet.asg_launch(self.target.autoscaling, name)
        except AwsError as exc:
            if exc.code == "AsgNotFound":
                raise self.target.resolved.problem(
                    "auto_scaling_group", f"{name} not found in {self.target.where}") from exc
            raise
        if asg.template_id != default.template_id:
            raise self.target.resolved.problem(
                "launch_template_name",
                f"the Auto Scaling group {asg.name} launches from "
                f"{asg.template_id or 'no launch template'}, not {default.template_name} "
                f"({default.template_id}): an instance refresh would not launch the release")
        self._asg = asg.name
        return asg

    def earlier(self, image: Image) -> Run | None:
        """The group's active refresh, when it is a release of this AMI (one runs at a
        time: any other one is in the way); else its last one, when that was a release
        of this AMI that ended without its release watching."""
        assert self._default is not None
        found = fleet.refreshes(self.target.autoscaling, self._asg)
        ours = self._default if self._default.image_id == image.id and (
            self._default.description.startswith(f"builder: {image.id} ")) else None

        def of_this_release(each: Refresh) -> bool:
            return ours is not None and (each.template_id, each.version) == (
                ours.template_id, str(ours.number))

        active = next((each for each in found if not each.done), None)
        if active is not None:
            if not of_this_release(active):
                raise OperationFailed(
                    f"{self.target.subject}: {self._asg} is busy with instance refresh "
                    f"{active.id} ({active.status}), not a release of {image.id}; release "
                    "again when it ends")
            return self._run(active)
        last = found[0] if found else None
        if last is None or not of_this_release(last):
            return None
        seen = (last.status != fleet.REFRESH_SUCCESSFUL
                and image.status == images.AmiStatus.FAILED)
        if seen:
            return None
        return self._run(last)

    def start(self, asg: AsgLaunch, new: TemplateVersion, description: str) -> Run:
        """Pin the group to the version it launches now (by number: the refresh's
        rollback goes back to it) and start the refresh to `new`; the group goes back
        if Auto Scaling refuses."""
        settings = self.target.resolved.settings
        pinned = asg.version in _PINNABLE
        if pinned:
            fleet.point_asg(self.target.autoscaling, asg.name, asg.template_id,
                            self._launched_before(asg, new))
        try:
            refresh_id = fleet.start_refresh(
                self.target.autoscaling, asg.name, new.template_id, new.number,
                min_healthy_percent=settings.refresh_min_healthy_percent,
                checkpoints=settings.refresh_checkpoints, alarms=settings.refresh_alarms)
        except AwsError as exc:
            if pinned:
                fleet.point_asg(self.target.autoscaling, asg.name, asg.template_id,
                                asg.version)
            if exc.code == "InstanceRefreshInProgress":
                raise OperationFailed(f"{self.target.subject}: {asg.name} is busy: "
                                      f"{exc.message}; release again when it ends") from exc
            raise
        return Run(refresh_id, "Pending")

    def _launched_before(self, asg: AsgLaunch, new: TemplateVersion) -> str:
        """The number `$Default` (or `$Latest`) stood for before the release: the
        default read before it, or (a re-run, the version made earlier) the one the
        new version's description remembers."""
        assert self._default is not None
        if self._default.number != new.number:
            return str(self._default.number)
        remembered = rollout.REMEMBERED.search(new.description)
        if remembered is None:
            raise OperationFailed(
                f"{self.target.subject}: {asg.name} launches {asg.version}, and the "
                f"version before {new.number} is not known: point {asg.name} at a version "
                "number and release again")
        return remembered["asg"] if remembered["asg"] and remembered["asg"].isdigit() \
            else remembered["previous"]

    def wait(self, run_id: str, *, timeout_s: float, progress: ProgressFn,
             cancel: Cancel) -> Ended:
        """Poll until the refresh ends, reporting status, share replaced and instances
        left, and each checkpoint reached; on timeout roll it back (or, where Auto
        Scaling can't, cancel it) and wait for that. Ctrl-C raises Interrupted and
        leaves it running."""
        subject, autoscaling = self.target.subject, self.target.autoscaling
        if self._group is not None and self.revision:
            progress(subject, f"CodeDeploy group {self._group.name} (in-place) installs "
                              f"{self.revision} on each new instance")
        seen: tuple[str, int, int, str] = ("", -1, -1, "")
        interval = deploy.intervals()

        def ended() -> Refresh | None:
            nonlocal seen
            state = fleet.refresh(autoscaling, self._asg, run_id)
            self._run(state)
            now = (state.status, state.percent, state.to_update, state.reason)
            if now != seen:
                seen = now
                interval.reset()
                progress(subject, f"instance refresh {run_id}: {_text(state)}")
            return state if state.done else None

        try:
            state = poll_until(ended, timeout_s=timeout_s, interval_s=interval, cancel=cancel,
                               what=f"instance refresh {run_id}")
        except TimedOut:
            return Ended(self._run(self._stop(run_id, progress)), timed_out=True)
        except Interrupted:
            progress(subject, f"stopped waiting; instance refresh {run_id} goes on. Run the "
                     "same release again to follow it to the end (verify or roll back)")
            raise
        return Ended(self._run(state), timed_out=False)

    def _stop(self, run_id: str, progress: ProgressFn) -> Refresh:
        autoscaling = self.target.autoscaling
        if fleet.roll_back_refresh(autoscaling, self._asg):
            progress(self.target.subject, f"timed out: rolling back instance refresh {run_id}")
        elif fleet.cancel_refresh(autoscaling, self._asg):
            progress(self.target.subject, f"timed out: cancelling instance refresh {run_id}")

        def ended() -> Refresh | None:
            state = fleet.refresh(autoscaling, self._asg, run_id)
            return state if state.done else None

        try:
            return poll_until(ended, timeout_s=STOP_WAIT_S, interval_s=deploy.intervals(),
                              what=f"stopping instance refresh {run_id}")
        except TimedOut:  # the caller says how it stands
            return fleet.refresh(autoscaling, self._asg, run_id)

    def launched(self, new: TemplateVersion) -> tuple[str, str]:
        asg = fleet.asg_launch(self.target.autoscaling, self._asg)
        if asg.template_id != new.template_id:
            return asg.name, ""
        if asg.version == str(new.number):
            return asg.name, new.image_id
        return asg.name, fleet.launched_image(self.target.ec2, {
            "LaunchTemplateId": asg.template_id, "Version": asg.version})

    def roll_back(self, new: TemplateVersion, back: str | None) -> tuple[str, list[str]]:
        """After AWS's own rollback (RollbackSuccessful) the instances and the group are
        as before; otherwise the group goes back to version `back` and, where the
        refresh replaced instances, a refresh to the version it launches now puts them
        back (not waited for)."""
        autoscaling, last, done = self.target.autoscaling, self._last, []
        if last is not None and last.status == fleet.REFRESH_ROLLED_BACK:
            done.append(f"Auto Scaling rolled instance refresh {last.id} back (its instances "
                        "are on the version before)")
        asg = fleet.asg_launch(autoscaling, self._asg)
        settled = asg.version
        on_new = asg.template_id == new.template_id and asg.version in (
            str(new.number), *_PINNABLE)
        if back and on_new and back != asg.version:
            fleet.point_asg(autoscaling, asg.name, asg.template_id, back)
            done.append(f"Auto Scaling group {asg.name} back to version {back}")
            settled = back
        if last is None or last.status == fleet.REFRESH_ROLLED_BACK or (
                last.status != fleet.REFRESH_SUCCESSFUL and last.percent == 0):
            return asg.name, done  # no instance of `new` left behind
        left = (f"the instances that instance refresh {last.id} replaced stay on version "
                f"{new.number} until replaced: start a refresh of {asg.name}")
        if not (settled.isdigit() and settled != str(new.number)):
            done.append(left)
            return asg.name, done
        try:
            refresh_id = fleet.start_refresh(
                autoscaling, asg.name, asg.template_id, int(settled),
                min_healthy_percent=self.target.resolved.settings.refresh_min_healthy_percent)
        except AwsError as exc:  # the rest of the rollback goes on; the message says
            done.append(f"{left} ({exc})")
        else:
            done.append(f"instance refresh {refresh_id} started to put the replaced "
                        f"instances back on version {settled} (not waited for)")
        return asg.name, done


def _rolling_back(state: Refresh) -> bool:
    return state.status in ("RollbackInProgress", fleet.REFRESH_ROLLED_BACK)


def _reached(state: Refresh) -> list[int]:
    """The checkpoints the refresh has passed (its percent counts the instances put back
    while it rolls back)."""
    return [] if _rolling_back(state) else [p for p in state.checkpoints if p <= state.percent]


def _text(state: Refresh) -> str:
    """E.g. "InProgress (50% replaced, 1 to update; checkpoint 50% reached)"."""
    verb = "put back" if _rolling_back(state) else "replaced"
    reached = _reached(state)
    return (f"{state.status} ({state.percent}% {verb}, {state.to_update} to update"
            + (f"; checkpoint {reached[-1]}% reached" if reached and not state.done
               and "checkpoint" not in state.reason.lower() else "")
            + ")" + (f": {state.reason}" if state.reason else ""))
