"""Freeze windows, decided: recurring windows from cron, freezes set by command, the scope, the one that lifts
last, and the gate (hold with a recheck, or go, recording a forced override)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from diachronic.ci.planner.freeze import ALL, RECHECK_S, Freeze, FreezeVerdict, FreezeWindow, active_freeze, freeze_gate

WEEKEND = FreezeWindow(cron="0 17 * * FRI", duration="64h", reason="weekend")  # Friday 17:00 to Monday 09:00
PARIS_NIGHT = FreezeWindow(cron="0 22 * * *", duration="8h", reason="night", timezone="Europe/Paris")
ORDERS_ONLY = FreezeWindow(cron="0 12 * * *", duration="1h", reason="lunch", workflows=["orders"])

FRI = datetime(2026, 11, 27, tzinfo=UTC)  # a Friday


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return FRI + timedelta(days=day, hours=hour, minutes=minute, seconds=second)


@pytest.mark.parametrize(
    ("window", "now", "until"),
    [
        (WEEKEND, at(0, 16, 59, 59), None),
        (WEEKEND, at(0, 17), at(3, 9)),
        (WEEKEND, at(2, 12), at(3, 9)),
        (WEEKEND, at(3, 8, 59), at(3, 9)),
        (WEEKEND, at(3, 9), None),
        (WEEKEND, at(4, 12), None),
        (PARIS_NIGHT, at(0, 20, 59), None),  # 21:59 in Paris (UTC+1 in November)
        (PARIS_NIGHT, at(0, 21), at(1, 5)),  # 22:00 in Paris
        (PARIS_NIGHT, at(1, 4, 59), at(1, 5)),
    ],
    ids=[
        "a second before it starts",
        "the minute it starts",
        "during",
        "the last minute",
        "when it ends",
        "between windows",
        "before the local evening",
        "the local evening",
        "the local morning",
    ],
)
def test_a_recurring_window_is_in_force_from_its_cron_for_its_duration(
    window: FreezeWindow, now: datetime, until: datetime | None
) -> None:
    assert window.in_force(now) == until


MANUAL = Freeze(scope="orders", until=at(0, 12), reason="incident 42")
EVERYTHING = Freeze(scope=ALL, until=at(0, 10), reason="release freeze")
BILLING = Freeze(scope="billing", until=at(1, 0), reason="billing audit")


@pytest.mark.parametrize(
    ("workflow", "now", "frozen", "windows", "expected"),
    [
        ("orders", at(0, 9), [], [], None),
        ("orders", at(0, 9), [MANUAL], [], MANUAL),
        ("orders", at(0, 12), [MANUAL], [], None),
        ("orders", at(0, 9), [BILLING], [], None),
        ("orders", at(0, 9), [EVERYTHING], [], EVERYTHING),
        ("orders", at(0, 9), [EVERYTHING, MANUAL], [], MANUAL),
        ("orders", at(0, 11), [EVERYTHING, MANUAL], [], MANUAL),
        (
            "orders",
            at(0, 12, 30),
            [],
            [ORDERS_ONLY],
            Freeze(scope="orders", until=at(0, 13), reason="lunch", source="window"),
        ),
        ("billing", at(0, 12, 30), [], [ORDERS_ONLY], None),
        ("orders", at(0, 11), [MANUAL], [WEEKEND], MANUAL),
        (
            "orders",
            at(0, 18),
            [MANUAL],
            [WEEKEND],
            Freeze(scope=ALL, until=at(3, 9), reason="weekend", source="window"),
        ),
    ],
    ids=[
        "no freeze",
        "frozen by command",
        "a freeze lifts at its time",
        "another workflow's freeze",
        "every workflow frozen",
        "the freeze that lifts last wins",
        "the one still in force",
        "a window for this workflow",
        "a window for another workflow",
        "a window not in force",
        "a window lifting later than a command",
    ],
)
def test_the_freeze_in_force_is_the_one_that_lifts_last(
    workflow: str, now: datetime, frozen: list[Freeze], windows: list[FreezeWindow], expected: Freeze | None
) -> None:
    assert active_freeze(now, workflow, frozen, windows) == expected


@pytest.mark.parametrize(
    ("freeze", "force", "verdict"),
    [
        (None, None, FreezeVerdict()),
        (None, "hotfix", FreezeVerdict()),
        (MANUAL, None, FreezeVerdict(hold=MANUAL, recheck_at=at(0, 9) + timedelta(seconds=RECHECK_S))),
        (
            Freeze(scope="orders", until=at(0, 9, 0, 10), reason="r"),
            None,
            FreezeVerdict(hold=Freeze(scope="orders", until=at(0, 9, 0, 10), reason="r"), recheck_at=at(0, 9, 0, 10)),
        ),
        (MANUAL, "hotfix for incident 42", FreezeVerdict(overridden=MANUAL)),
    ],
    ids=[
        "no freeze: go",
        "forced without a freeze: nothing to record",
        "held: look again soon",
        "held: look again when it lifts",
        "forced: go, recorded",
    ],
)
def test_the_gate_holds_or_goes(freeze: Freeze | None, force: str | None, verdict: FreezeVerdict) -> None:
    assert freeze_gate(at(0, 9), freeze, force_reason=force) == verdict


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"cron": "every friday", "duration": "1h", "reason": "r"}, "not a cron expression"),
        ({"cron": "0 17 * * FRI *", "duration": "1h", "reason": "r"}, "five fields"),
        ({"cron": "0 17 * * FRI", "duration": "a while", "reason": "r"}, "not a duration"),
        ({"cron": "0 17 * * FRI", "duration": "1h", "reason": "r", "timezone": "Mars/Olympus"}, "not a time zone"),
        ({"cron": "0 17 * * FRI", "duration": "1h", "reason": ""}, "at least 1 character"),
    ],
    ids=["words", "six fields", "duration", "time zone", "no reason"],
)
def test_a_bad_window_is_refused_with_what_is_wrong(values: dict[str, str], problem: str) -> None:
    with pytest.raises(ValidationError) as raised:
        FreezeWindow.model_validate(values)
    assert problem in str(raised.value)


def test_a_freeze_scope_is_a_workflow_name_or_all() -> None:
    assert Freeze(scope=ALL, until=FRI, reason="r").scope == "*"
    with pytest.raises(ValidationError, match="workflow name"):
        Freeze(scope="orders.v2", until=FRI, reason="r")


def test_a_window_travels_as_json_and_comes_back_the_same() -> None:
    for window in (WEEKEND, PARIS_NIGHT, ORDERS_ONLY):
        assert FreezeWindow.model_validate_json(window.model_dump_json()) == window
