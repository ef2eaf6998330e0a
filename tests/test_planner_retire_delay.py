"""Retire delay, decided: the countdown starts when the retire rule first allows deleting the old workers, runs
out after the delay, and stops (to start over) whenever the rule holds or keeps the workers (a roll-back)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from diachronic.ci.planner.retire import LIVE_AGAIN, RetireBlocker, RetirePlan
from diachronic.ci.planner.retire_delay import RetireCountdown, count_down, hold_while_counting

T0 = datetime(2026, 11, 29, 9, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("now", "delay", "ready", "since", "expected"),
    [
        (T0, timedelta(0), True, None, RetireCountdown(True, T0, T0)),
        (T0, HOUR, False, None, RetireCountdown(False)),
        (T0, HOUR, True, None, RetireCountdown(False, T0, T0 + HOUR)),
        (T0 + HOUR / 2, HOUR, True, T0, RetireCountdown(False, T0, T0 + HOUR)),
        (T0 + HOUR, HOUR, True, T0, RetireCountdown(True, T0, T0 + HOUR)),
        (T0 + 2 * HOUR, HOUR, True, T0, RetireCountdown(True, T0, T0 + HOUR)),
        (T0 + HOUR / 2, HOUR, False, T0, RetireCountdown(False)),
    ],
    ids=[
        "no delay: retire at once (as before)",
        "the rule holds: no countdown",
        "the rule allows it: the countdown starts",
        "during the countdown",
        "the countdown ran out",
        "looked late: retire",
        "a roll-back (or a workflow on the old queue) during the countdown stops it",
    ],
)
def test_the_countdown(
    now: datetime, delay: timedelta, ready: bool, since: datetime | None, expected: RetireCountdown
) -> None:
    assert count_down(now, delay=delay, ready=ready, ready_since=since) == expected


def test_a_stopped_countdown_starts_over_with_the_full_delay() -> None:
    first = count_down(T0, delay=HOUR, ready=True, ready_since=None)
    stopped = count_down(T0 + HOUR / 2, delay=HOUR, ready=False, ready_since=first.ready_since)
    again = count_down(T0 + HOUR, delay=HOUR, ready=True, ready_since=stopped.ready_since)
    assert (again.retire_now, again.retire_at) == (False, T0 + 2 * HOUR)


RETIRE = RetirePlan(archive_flag=True, delete_workers=True)
KEEP = RetirePlan(archive_flag=True, kept_workers=LIVE_AGAIN)
HOLD = RetirePlan(RetireBlocker.RUNNING)
COUNTING = RetireCountdown(False, T0, T0 + HOUR)
RAN_OUT = RetireCountdown(True, T0, T0)


@pytest.mark.parametrize(
    ("plan", "countdown", "expected"),
    [
        (RETIRE, COUNTING, RetirePlan(RetireBlocker.DELAYED)),
        (RETIRE, RAN_OUT, RETIRE),
        (KEEP, RetireCountdown(False), KEEP),
        (HOLD, RetireCountdown(False), HOLD),
    ],
    ids=[
        "counting: nothing yet, not even the flag (a roll-back finds the version as it was)",
        "ran out: retire as planned",
        "live again: the workers stay anyway, the flag goes now",
        "the rule holds: its own reason",
    ],
)
def test_the_retire_plan_waits_for_the_countdown(
    plan: RetirePlan, countdown: RetireCountdown, expected: RetirePlan
) -> None:
    assert hold_while_counting(plan, countdown) == expected
