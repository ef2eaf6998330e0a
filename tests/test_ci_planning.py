"""Pure CI decisions, table-driven, no server."""

from __future__ import annotations

import pytest

from diachronic.ci import planning
from diachronic.ci.planning import (
    DeployDecision,
    MigrationAction,
    RetireBlocker,
    RolloutStopReason,
    TrafficObservation,
)
from diachronic.contracts import RolloutStep
from diachronic.errors import InvalidInput
from diachronic.flags import FlagStrategy, VersionFlag
from diachronic.versions import version_info


def flag(seq: int, version: str, percent: int | None, *, enabled: bool = True, archived: bool = False) -> VersionFlag:
    info = version_info("wf", seq, version)
    strategies = (
        []
        if percent is None
        else [
            FlagStrategy(
                name="flexibleRollout",
                title="All other traffic",
                parameters={"rollout": str(percent), "stickiness": "default", "groupId": info.flag_name},
            )
        ]
    )
    return VersionFlag(info=info, enabled=enabled, archived=archived, strategies=strategies)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10@60s,20@60s,100@60s", [(10, 60), (20, 60), (100, 60)]),
        ("25@3s,50@3s,75@3s,100@3s", [(25, 3), (50, 3), (75, 3), (100, 3)]),
        ("50@1m,100@1.5h", [(50, 60), (100, 5400)]),
        ("100@500ms", [(100, 0.5)]),
        (" 30 @ 10 , 100@0 ", [(30, 10), (100, 0)]),
    ],
    ids=["seconds", "quarters", "minutes and hours", "milliseconds", "spaces and no unit"],
)
def test_parse_steps(text: str, expected: list[tuple[int, float]]) -> None:
    assert [(s.percent, s.wait_s) for s in planning.parse_steps(text)] == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10@60s,5@60s,100@1s", "must rise"),
        ("10@60s,50@60s", "must end at 100%"),
        ("0@1s,100@1s", "outside 1..100"),
        ("abc", "invalid rollout step 'abc'"),
        ("101@1s", "outside 1..100"),
        ("50@-1s,100@1s", "invalid rollout step"),
    ],
    ids=["falling", "not ending at 100", "zero step", "garbage", "over 100", "negative wait"],
)
def test_bad_schedules_are_rejected_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        planning.parse_steps(text)


@pytest.mark.parametrize(
    ("step", "start", "expected"),
    [
        (10, 0, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]),
        (30, 0, [30, 60, 90, 100]),
        (25, 0, [25, 50, 75, 100]),
        (40, 20, [60, 100]),
        (100, 0, [100]),
        (150, 0, [100]),
    ],
    ids=["default", "step does not divide: still ends at 100", "quarters", "non-zero start", "one step", "huge step"],
)
def test_default_steps_always_end_exactly_at_the_maximum(step: int, start: int, expected: list[int]) -> None:
    steps = planning.default_steps(step, 60, start_percent=start)
    assert [s.percent for s in steps] == expected
    assert all(s.wait_s == 60 for s in steps)


def test_default_schedule_is_ten_percent_every_minute() -> None:
    assert planning.default_steps() == [RolloutStep(percent=p, wait_s=60) for p in range(10, 101, 10)]


@pytest.mark.parametrize(
    ("observed", "expected_percent", "reason"),
    [
        (TrafficObservation(20), 20, None),
        (TrafficObservation(42), 20, RolloutStopReason.HUMAN_EDIT),
        (TrafficObservation(100), 20, RolloutStopReason.HUMAN_EDIT),
        (TrafficObservation(None, strategy_found=False), 20, RolloutStopReason.STRATEGY_MISSING),
        (TrafficObservation(20, strategy_disabled=True), 20, RolloutStopReason.STRATEGY_DISABLED),
        (TrafficObservation(None, flag_found=False), 20, RolloutStopReason.FLAG_MISSING),
    ],
    ids=["unchanged", "hand edit", "fast-forward by hand", "strategy deleted", "strategy disabled", "flag archived"],
)
def test_check_traffic(observed: TrafficObservation, expected_percent: int, reason: RolloutStopReason | None) -> None:
    assert planning.check_traffic(observed, expected_percent) is reason


def test_observe_flag_reads_the_general_strategy() -> None:
    assert planning.observe_flag(flag(1, "b", 30)) == TrafficObservation(30)
    assert planning.observe_flag(flag(1, "b", None)) == TrafficObservation(None, strategy_found=False)
    assert planning.observe_flag(None) == TrafficObservation(None, flag_found=False)
    assert planning.observe_flag(flag(1, "b", 30, archived=True)).flag_found is False


@pytest.mark.parametrize(
    ("flags", "old_seq", "running", "blocker"),
    [
        ([flag(1, "b", 100), flag(0, "a", 100)], 0, 0, None),
        ([flag(1, "b", 100), flag(0, "a", 100)], 0, 3, RetireBlocker.RUNNING),
        ([flag(1, "b", 60), flag(0, "a", 100)], 0, 0, RetireBlocker.ROUTED),
        ([flag(1, "b", 100, enabled=False), flag(0, "a", 100)], 0, 0, RetireBlocker.ROUTED),
        ([flag(0, "a", 100)], 0, 0, RetireBlocker.NEWEST),
        ([flag(2, "c", 100), flag(1, "b", 0), flag(0, "a", 100)], 0, 0, None),
        ([flag(2, "a", 100), flag(1, "b", 100), flag(0, "a", 100, archived=True)], 1, 0, None),
    ],
    ids=[
        "drained and fully routed away: retire",
        "workflows still running: keep",
        "new version at 60%: old still routed, keep",
        "new flag disabled: keep",
        "never retire the newest version",
        "a newer version at 100% shields it",
        "redeployed older version: retire the middle one",
    ],
)
def test_retire_blocker(flags: list[VersionFlag], old_seq: int, running: int, blocker: RetireBlocker | None) -> None:
    old = next(f.info for f in flags if f.info.seq_id == old_seq)
    assert planning.retire_blocker(flags, old, running) is blocker


@pytest.mark.parametrize(
    ("eligible", "running", "action"),
    [(5, 10, MigrationAction.SIGNAL_MORE), (0, 10, MigrationAction.WAIT), (0, 0, MigrationAction.RETIRE)],
    ids=["more to signal", "waiting for the rest", "drained"],
)
def test_next_migration_action(eligible: int, running: int, action: MigrationAction) -> None:
    assert planning.next_migration_action(eligible_unsignalled=eligible, running_on_old_queue=running) is action


def test_prune_signalled_keeps_only_runs_still_on_the_old_queue() -> None:
    assert planning.prune_signalled(["r1", "r2", "r3"], ["r3", "r9", "r1"]) == ["r1", "r3"]


@pytest.mark.parametrize(
    ("version", "current", "queued", "decision"),
    [
        ("v3", "v2", [], DeployDecision.ACCEPT),
        ("v2", "v2", [], DeployDecision.DUPLICATE_CURRENT),
        ("v3", "v2", ["v3"], DeployDecision.DUPLICATE_QUEUED),
        ("v1", "v2", ["v3"], DeployDecision.ACCEPT),
        ("v1", None, [], DeployDecision.ACCEPT),
    ],
    ids=["new version", "same as in progress", "same as queued", "older version is a redeploy", "idle"],
)
def test_classify_deploy(version: str, current: str | None, queued: list[str], decision: DeployDecision) -> None:
    assert planning.classify_deploy(version, current=current, queued=queued) is decision


def test_plan_deployment() -> None:
    assert planning.plan_deployment(None).kind is planning.DeploymentKind.INITIAL
    previous = version_info("wf", 0, "a")
    assert planning.plan_deployment(previous) == planning.DeploymentPlan(planning.DeploymentKind.ROLLOUT, previous)
