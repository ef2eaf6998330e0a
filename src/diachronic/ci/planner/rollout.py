"""The rollout's step machine: where a rollout starts, when it writes the next step, what it writes on which
expected value, when it holds (paused) or jumps to 100 % (promoted), when it stops (a human edited the flag) and
when it looks again.

The rollout workflow (and the CI's initial deployment, a one-step rollout to 100 %) loops:

    observed = observe_flag(<flag read by an activity>)
    plan = plan_rollout(RolloutSnapshot(steps=..., observed=observed, now=workflow.now(), ...))
    START    -> hold ``plan.percent`` from now on, continue at ``plan.step_index``
    WRITE    -> set the general percentage to ``plan.percent`` only if it still holds ``plan.expected``
                (a failed condition is a human edit: look again, and the next plan stops)
    GATE     -> run the gate workflow before step ``plan.step_index`` (``deploy --gate-every-step``), then look again:
                passed, the step is written; failed, the rollout ends aborted (``diachronic.ci.planner.gate``)
    WAIT     -> sleep until ``plan.wake_at`` (or a control), then look again
    HOLD     -> a step is due but a freeze is in force (``plan.freeze``): write nothing, look again at ``wake_at``
    STOP     -> a human changed the flag (``plan.stop`` says how): step aside
    COMPLETE -> the schedule is done

The default answer when anything is unknown is to hold (WAIT or STOP): the machine never writes unless the flag
holds exactly what the automation last wrote and a step is due.

Freezes are read only when a step is due (a WRITE without them): the workflow then reads the freeze in force and
asks again with it (``RolloutSnapshot.freeze``). A forced deployment writes through it and the plan names the freeze
it overrode; a human's promote goes through a freeze too (a human decided it, as with an edit by hand).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from diachronic.ci.planner.freeze import Freeze, freeze_gate
from diachronic.ci.planner.schedule import MAX_PERCENT
from diachronic.contracts import RolloutStep
from diachronic.flags import GENERAL_TRAFFIC_TITLE, VersionFlag
from diachronic.flags.evaluation import general_percent

__all__ = [
    "INITIAL_STEPS",
    "RolloutAction",
    "RolloutPlan",
    "RolloutSnapshot",
    "RolloutStopReason",
    "TrafficObservation",
    "check_traffic",
    "observe_flag",
    "plan_rollout",
    "step_deadline",
    "stop_detail",
    "write_landed",
]

INITIAL_STEPS = (RolloutStep(percent=MAX_PERCENT, wait_s=0),)
"""An initial deployment is a rollout of one step: 100 % at once."""


class RolloutStopReason(StrEnum):
    HUMAN_EDIT = "RolloutPercentNotExpected"  # somebody changed "All other traffic": a human always wins
    STRATEGY_MISSING = "GeneralTrafficStrategyNotFound"
    STRATEGY_DISABLED = "GeneralTrafficStrategyDisabled"
    FLAG_MISSING = "FlagNotFound"


class RolloutAction(StrEnum):
    START = "start"  # the first look: hold what the flag holds, skip the steps at or below it
    WRITE = "write"  # a step is due: write ``percent`` on ``expected``
    GATE = "gate"  # a step is due, and its gate must pass first
    WAIT = "wait"  # nothing is due: look again at ``wake_at``
    HOLD = "hold"  # a step is due, a freeze holds it: look again at ``wake_at``
    STOP = "stop"  # the flag is not as the automation left it
    COMPLETE = "complete"  # every step is done


@dataclass(frozen=True)
class TrafficObservation:
    """What the flag says now: the general rollout percent, or why there is none."""

    percent: int | None
    strategy_found: bool = True
    strategy_disabled: bool = False
    flag_found: bool = True


@dataclass(frozen=True)
class RolloutSnapshot:
    """The rollout's state plus what the flag holds now."""

    steps: tuple[RolloutStep, ...]
    observed: TrafficObservation
    now: datetime
    poll_interval_s: float
    started: bool = False  # False: this is the first look
    percent: int = 0  # what the flag holds as far as the automation knows (its last write, or the start)
    step_index: int = 0
    step_started_at: datetime | None = None
    resumed_at: datetime | None = None
    paused: bool = False
    promote: bool = False
    gate_every_step: bool = False  # ``--gate-every-step``: the gate passes before each step after the first
    gated_through: int = 0  # the gate passed before every step up to this index
    freeze: Freeze | None = None  # the freeze in force now (read when a step is due)
    force_reason: str | None = None  # the deployment goes through freezes, for this reason


@dataclass(frozen=True)
class RolloutPlan:
    action: RolloutAction
    percent: int | None = None  # START: where the rollout stands; WRITE: what to write
    expected: int | None = None  # WRITE: the condition, what the flag must still hold
    step_index: int | None = None  # START, WRITE: the next step afterwards; GATE: the step the gate is for
    stop: RolloutStopReason | None = None
    wake_at: datetime | None = None  # WAIT, HOLD: when to look again
    freeze: Freeze | None = None  # HOLD: the freeze holding the step; WRITE: the freeze a forced step went through

    @property
    def branch(self) -> RolloutAction:
        return self.action


def observe_flag(flag: VersionFlag | None) -> TrafficObservation:
    if flag is None or flag.archived:
        return TrafficObservation(None, flag_found=False)
    strategy = next((s for s in flag.strategies if s.title == GENERAL_TRAFFIC_TITLE), None)
    if strategy is None:
        return TrafficObservation(None, strategy_found=False)
    return TrafficObservation(general_percent(flag), strategy_disabled=strategy.disabled)


def check_traffic(observed: TrafficObservation, expected: int) -> RolloutStopReason | None:
    """None when the flag still holds what automation last wrote; else why the rollout must stop."""
    if not observed.flag_found:
        return RolloutStopReason.FLAG_MISSING
    if not observed.strategy_found:
        return RolloutStopReason.STRATEGY_MISSING
    if observed.percent != expected:
        return RolloutStopReason.HUMAN_EDIT
    if observed.strategy_disabled:
        return RolloutStopReason.STRATEGY_DISABLED
    return None


def plan_rollout(snapshot: RolloutSnapshot) -> RolloutPlan:
    """The next thing the rollout does; see the module's docstring."""
    steps, now = snapshot.steps, snapshot.now
    if not snapshot.started:
        start = snapshot.observed.percent if snapshot.observed.percent is not None else 0
        if (reason := check_traffic(snapshot.observed, start)) is not None:
            return RolloutPlan(RolloutAction.STOP, stop=reason)
        return RolloutPlan(RolloutAction.START, percent=start, step_index=_first_step_above(steps, start))
    if (reason := check_traffic(snapshot.observed, snapshot.percent)) is not None:
        return RolloutPlan(RolloutAction.STOP, stop=reason)
    if snapshot.step_index >= len(steps):
        return RolloutPlan(RolloutAction.COMPLETE)
    if snapshot.promote:
        return RolloutPlan(RolloutAction.WRITE, percent=MAX_PERCENT, expected=snapshot.percent, step_index=len(steps))
    deadline = step_deadline(steps[snapshot.step_index], snapshot.step_started_at or now, snapshot.resumed_at)
    if not snapshot.paused and now >= deadline:
        verdict = freeze_gate(now, snapshot.freeze, force_reason=snapshot.force_reason)
        if verdict.hold is not None:
            return RolloutPlan(RolloutAction.HOLD, wake_at=verdict.recheck_at, freeze=verdict.hold)
        if snapshot.gate_every_step and snapshot.step_index > snapshot.gated_through:
            return RolloutPlan(RolloutAction.GATE, step_index=snapshot.step_index)
        return RolloutPlan(
            RolloutAction.WRITE,
            percent=steps[snapshot.step_index].percent,
            expected=snapshot.percent,
            step_index=snapshot.step_index + 1,
            freeze=verdict.overridden,
        )
    poll = now + timedelta(seconds=snapshot.poll_interval_s)
    return RolloutPlan(RolloutAction.WAIT, wake_at=poll if snapshot.paused else min(deadline, poll))


def write_landed(percent: int, found: int | None) -> bool:
    """A conditional write refused because the flag already holds its target: an earlier attempt of this very write
    landed and its reply was lost (Temporal retried it). Nothing would be overwritten: the write is done."""
    return found == percent


def step_deadline(step: RolloutStep, step_started_at: datetime, resumed_at: datetime | None) -> datetime:
    """When a step is due: its wait after it began (when the step before was written, or at the start), and after
    the last resume (a resumed step waits its full time again)."""
    began = step_started_at if resumed_at is None else max(step_started_at, resumed_at)
    return began + timedelta(seconds=step.wait_s)


def stop_detail(reason: RolloutStopReason, flag_name: str, found: int | None, written: int) -> str:
    """What status shows for a stop."""
    if reason is RolloutStopReason.HUMAN_EDIT:
        return (
            f"All other traffic of {flag_name} is {found}% but the rollout last set {written}%: "
            "a human changed it, the rollout stopped"
        )
    return f"{reason.value} on {flag_name}: the rollout stopped"


def _first_step_above(steps: Sequence[RolloutStep], percent: int) -> int:
    """Steps at or below where the flag already stands are behind us."""
    return next((i for i, step in enumerate(steps) if step.percent > percent), len(steps))
