"""The rollout's step machine (``planner.rollout``): table-driven on a virtual clock, then driven over time against
a fake flag, as the rollout workflow drives it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from tests.planner_factories import T0, at, flag, machine, seen, steps

from diachronic.ci.planner import rollout
from diachronic.ci.planner.freeze import Freeze
from diachronic.ci.planner.rollout import (
    INITIAL_STEPS,
    RolloutAction,
    RolloutPlan,
    RolloutSnapshot,
    RolloutStopReason,
    TrafficObservation,
)
from diachronic.contracts import RolloutStep

WRITE, WAIT, STOP = RolloutAction.WRITE, RolloutAction.WAIT, RolloutAction.STOP
FROZEN = Freeze(scope="orders", until=at(3600), reason="incident 42")


@pytest.mark.parametrize(
    ("snapshot", "plan"),
    [
        (machine(started=False), RolloutPlan(RolloutAction.START, percent=0, step_index=0)),
        (machine(started=False, observed=seen(50)), RolloutPlan(RolloutAction.START, percent=50, step_index=1)),
        (machine(started=False, observed=seen(100)), RolloutPlan(RolloutAction.START, percent=100, step_index=2)),
        (
            machine(started=False, observed=seen(None, strategy_found=False)),
            RolloutPlan(STOP, stop=RolloutStopReason.STRATEGY_MISSING),
        ),
        (
            machine(started=False, observed=seen(0, strategy_disabled=True)),
            RolloutPlan(STOP, stop=RolloutStopReason.STRATEGY_DISABLED),
        ),
        (machine(), RolloutPlan(WAIT, wake_at=at(10))),
        (machine(now=at(55)), RolloutPlan(WAIT, wake_at=at(60))),
        (machine(now=at(60)), RolloutPlan(WRITE, percent=50, expected=0, step_index=1)),
        (
            machine(now=at(130), percent=50, step_index=1, step_started_at=at(60), observed=seen(50)),
            RolloutPlan(WRITE, percent=100, expected=50, step_index=2),
        ),
        (machine(percent=100, step_index=2, observed=seen(100)), RolloutPlan(RolloutAction.COMPLETE)),
        (machine(now=at(600), paused=True), RolloutPlan(WAIT, wake_at=at(610))),
        (machine(now=at(90), resumed_at=at(60)), RolloutPlan(WAIT, wake_at=at(100))),
        (machine(now=at(120), resumed_at=at(60)), RolloutPlan(WRITE, percent=50, expected=0, step_index=1)),
        (machine(promote=True), RolloutPlan(WRITE, percent=100, expected=0, step_index=2)),
        (machine(promote=True, paused=True), RolloutPlan(WRITE, percent=100, expected=0, step_index=2)),
        (machine(now=at(60), observed=seen(30)), RolloutPlan(STOP, stop=RolloutStopReason.HUMAN_EDIT)),
        (
            machine(now=at(60), observed=seen(0, strategy_disabled=True)),
            RolloutPlan(STOP, stop=RolloutStopReason.STRATEGY_DISABLED),
        ),
        (
            machine(observed=TrafficObservation(None, flag_found=False)),
            RolloutPlan(STOP, stop=RolloutStopReason.FLAG_MISSING),
        ),
        (machine(promote=True, observed=seen(100)), RolloutPlan(STOP, stop=RolloutStopReason.HUMAN_EDIT)),
        (machine(now=at(60), freeze=FROZEN), RolloutPlan(RolloutAction.HOLD, wake_at=at(90), freeze=FROZEN)),
        (
            machine(now=at(3590), freeze=FROZEN),
            RolloutPlan(RolloutAction.HOLD, wake_at=at(3600), freeze=FROZEN),
        ),
        (
            machine(now=at(60), freeze=FROZEN, force_reason="hotfix"),
            RolloutPlan(WRITE, percent=50, expected=0, step_index=1, freeze=FROZEN),
        ),
        (machine(now=at(30), freeze=FROZEN), RolloutPlan(WAIT, wake_at=at(40))),
        (machine(freeze=FROZEN, promote=True), RolloutPlan(WRITE, percent=100, expected=0, step_index=2)),
        (machine(now=at(60), freeze=FROZEN, observed=seen(30)), RolloutPlan(STOP, stop=RolloutStopReason.HUMAN_EDIT)),
        (machine(now=at(60), freeze=None), RolloutPlan(WRITE, percent=50, expected=0, step_index=1)),
    ],
    ids=[
        "the first look at a new flag starts at 0",
        "a flag already at 50 starts there: the 50 step is behind",
        "a flag already at 100 starts there: nothing is left to do",
        "no general strategy at the first look: stop",
        "a disabled general strategy at the first look: stop",
        "a step not due: look again after one poll",
        "a step due before the next poll: wake at the deadline",
        "a step due: write it on the value read",
        "the next step due a minute after the last write",
        "every step written: complete",
        "paused past the deadline: hold, look again after one poll",
        "resumed: the step waits its full time from the resume",
        "resumed, the full wait over: write",
        "promoted: 100 % at once",
        "promoted while paused: promote wins",
        "a human changed the percentage: stop, write nothing",
        "a human disabled the strategy: stop",
        "a human archived the flag: stop",
        "a human's edit wins over a promote",
        "a step due during a freeze: hold the current step, look again within the recheck",
        "the freeze ends before the recheck: look again when it ends",
        "forced: write through the freeze, and name it (recorded)",
        "no step due: a freeze changes nothing",
        "a human's promote goes through a freeze",
        "a human edit during a freeze still stops the rollout",
        "no freeze: write",
    ],
)
def test_plan_rollout(snapshot: RolloutSnapshot, plan: RolloutPlan) -> None:
    assert rollout.plan_rollout(snapshot) == plan


def test_the_initial_deployment_is_a_one_step_rollout_to_100_at_once() -> None:
    first = rollout.plan_rollout(machine(steps=INITIAL_STEPS, started=False))
    assert first == RolloutPlan(RolloutAction.START, percent=0, step_index=0)
    assert rollout.plan_rollout(machine(steps=INITIAL_STEPS)) == RolloutPlan(
        WRITE, percent=100, expected=0, step_index=1
    )


@pytest.mark.parametrize(
    ("observed", "expected", "reason"),
    [
        (seen(20), 20, None),
        (seen(42), 20, RolloutStopReason.HUMAN_EDIT),
        (seen(100), 20, RolloutStopReason.HUMAN_EDIT),
        (seen(None, strategy_found=False), 20, RolloutStopReason.STRATEGY_MISSING),
        (seen(20, strategy_disabled=True), 20, RolloutStopReason.STRATEGY_DISABLED),
        (TrafficObservation(None, flag_found=False), 20, RolloutStopReason.FLAG_MISSING),
    ],
    ids=["unchanged", "hand edit", "fast-forward by hand", "strategy deleted", "strategy disabled", "flag archived"],
)
def test_check_traffic(observed: TrafficObservation, expected: int, reason: RolloutStopReason | None) -> None:
    assert rollout.check_traffic(observed, expected) is reason


def test_observe_flag_reads_the_general_strategy() -> None:
    assert rollout.observe_flag(flag(1, "b", 30)) == seen(30)
    assert rollout.observe_flag(flag(1, "b", None)) == seen(None, strategy_found=False)
    assert rollout.observe_flag(flag(1, "b", 30, disabled=True)) == seen(30, strategy_disabled=True)
    assert rollout.observe_flag(None) == TrafficObservation(None, flag_found=False)
    assert rollout.observe_flag(flag(1, "b", 30, archived=True)).flag_found is False


# --------------------------------------------------------------------------------------------------- over time


@dataclass
class Run:
    """The step machine executed as the rollout workflow executes it, against a flag held here."""

    steps: tuple[RolloutStep, ...]
    flag: int = 0
    poll_s: float = 10
    now: datetime = T0
    state: dict[str, object] = field(default_factory=dict)
    writes: list[tuple[float, int]] = field(default_factory=list)
    edits: dict[float, int] = field(default_factory=dict)  # second -> the percentage a human sets then

    def go(self, limit_s: float = 86400) -> RolloutPlan:
        while (self.now - T0).total_seconds() < limit_s:
            for second, percent in list(self.edits.items()):
                if (self.now - T0).total_seconds() >= second:
                    self.flag = percent
                    del self.edits[second]
            snapshot = RolloutSnapshot(
                steps=self.steps, observed=seen(self.flag), now=self.now, poll_interval_s=self.poll_s, **self.state
            )
            plan = rollout.plan_rollout(snapshot)
            if plan.action in (RolloutAction.START, RolloutAction.WRITE):
                if plan.action is RolloutAction.WRITE:
                    assert plan.expected == self.flag  # the conditional write holds: nobody edited meanwhile
                    self.flag = plan.percent or 0
                    self.writes.append(((self.now - T0).total_seconds(), self.flag))
                self.state |= {"started": True, "percent": plan.percent, "step_index": plan.step_index}
                self.state["step_started_at"] = self.now
            elif plan.action is RolloutAction.WAIT:
                assert plan.wake_at is not None and plan.wake_at > self.now
                self.now = plan.wake_at
            else:
                return plan
        raise AssertionError("the rollout did not end in a day")


def test_the_default_schedule_reaches_100_in_ten_steps_a_minute_apart() -> None:
    run = Run(steps=steps(*[(p, 60) for p in range(10, 101, 10)]))
    assert run.go() == RolloutPlan(RolloutAction.COMPLETE)
    assert run.writes == [(60.0 * i, 10 * i) for i in range(1, 11)]


def test_a_poll_slower_than_the_steps_still_writes_every_step_in_order() -> None:
    run = Run(steps=steps((25, 5), (50, 5), (75, 5), (100, 5)), poll_s=12)
    run.go()
    assert [percent for _, percent in run.writes] == [25, 50, 75, 100]
    assert [second for second, _ in run.writes] == [5, 10, 15, 20]


def test_a_human_edit_stops_the_machine_and_nothing_is_written_after_it() -> None:
    run = Run(steps=steps((20, 60), (40, 3600), (100, 3600)), edits={85: 70})
    assert run.go() == RolloutPlan(STOP, stop=RolloutStopReason.HUMAN_EDIT)
    assert run.writes == [(60.0, 20)] and run.flag == 70
    assert run.now == at(90)  # noticed at the first poll after the edit


def test_the_next_deadline_is_never_in_the_past_and_polls_are_bounded() -> None:
    plan = rollout.plan_rollout(machine(now=at(30), step_started_at=at(-1000), paused=True))
    assert plan == RolloutPlan(WAIT, wake_at=at(30) + timedelta(seconds=10))
