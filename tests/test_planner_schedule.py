"""The rollout schedule: parsed, validated, defaulted."""

from __future__ import annotations

import pytest

from diachronic.ci.planner import schedule
from diachronic.contracts import RolloutStep
from diachronic.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10@60s,20@60s,100@60s", [(10, 60), (20, 60), (100, 60)]),
        ("25@3s,50@3s,75@3s,100@3s", [(25, 3), (50, 3), (75, 3), (100, 3)]),
        ("50@1m,100@1.5h", [(50, 60), (100, 5400)]),
        ("100@500ms", [(100, 0.5)]),
        (" 30 @ 10 , 100@0 ", [(30, 10), (100, 0)]),
        ("10@60s,50@60s", [(10, 60), (50, 60), (100, 60)]),
        ("20@1m,20@1h,100@1m", [(20, 60), (20, 3600), (100, 60)]),
        ("0@10s,100@10s", [(0, 10), (100, 10)]),
    ],
    ids=[
        "seconds",
        "quarters",
        "minutes and hours",
        "milliseconds",
        "spaces and no unit",
        "a schedule short of 100 gets a final 100 step",
        "a step may hold the percentage",
        "a step may hold at 0",
    ],
)
def test_parse_steps(text: str, expected: list[tuple[int, float]]) -> None:
    assert [(s.percent, s.wait_s) for s in schedule.parse_steps(text)] == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10@60s,5@60s,100@1s", "must not go down: 5% comes after 10%"),
        ("50@1s,20@1s", "must not go down: 20% comes after 50%"),
        ("abc", "invalid rollout step 'abc'"),
        ("101@1s", "outside 0..100"),
        ("50@-1s,100@1s", "invalid rollout step"),
        ("", "invalid rollout step"),
    ],
    ids=["falling", "falling and short", "garbage", "over 100", "negative wait", "empty"],
)
def test_bad_schedules_are_rejected_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        schedule.parse_steps(text)


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
    steps = schedule.default_steps(step, 60, start_percent=start)
    assert [s.percent for s in steps] == expected
    assert all(s.wait_s == 60 for s in steps)


def test_default_schedule_is_ten_percent_every_minute() -> None:
    assert schedule.default_steps() == [RolloutStep(percent=p, wait_s=60) for p in range(10, 101, 10)]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "at least one step"),
        ([RolloutStep.model_construct(percent=-1, wait_s=1)], "outside 0..100"),
        ([RolloutStep.model_construct(percent=50, wait_s=-1)], "cannot be negative"),
    ],
    ids=["no step", "negative percent (built without validation)", "negative wait (built without validation)"],
)
def test_validate_steps_refuses_what_no_boundary_may_pass(steps: list[RolloutStep], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        schedule.validate_steps(steps)


def test_format_and_parse_round_trip() -> None:
    steps = schedule.parse_steps("10@60s,50@1.5s,100@2m")
    assert schedule.parse_steps(schedule.format_steps(steps)) == steps
