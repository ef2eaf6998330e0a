"""Readiness: proceed once a worker polls, wait up to the ready timeout, then fail with WorkersNotReady."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from diachronic.ci.planner.readiness import (
    ReadinessAction,
    ReadinessPlan,
    ReadinessSnapshot,
    plan_readiness,
    waiting_for_workers,
)

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
QUEUE = "wf-v2"


def snapshot(pollers: int, after_s: float, *, timeout_s: float = 600, poll_s: float = 1) -> ReadinessSnapshot:
    return ReadinessSnapshot(
        task_queue=QUEUE,
        pollers=pollers,
        waiting_since=T0,
        now=T0 + timedelta(seconds=after_s),
        timeout_s=timeout_s,
        poll_interval_s=poll_s,
    )


@pytest.mark.parametrize(
    ("observed", "plan"),
    [
        (snapshot(1, 0), ReadinessPlan(ReadinessAction.PROCEED)),
        (snapshot(3, 599), ReadinessPlan(ReadinessAction.PROCEED)),
        (snapshot(2, 5000), ReadinessPlan(ReadinessAction.PROCEED)),
        (
            snapshot(0, 0),
            ReadinessPlan(
                ReadinessAction.WAIT, waiting_for="waiting for workers on wf-v2", wake_at=T0 + timedelta(seconds=1)
            ),
        ),
        (
            snapshot(0, 599.5),
            ReadinessPlan(
                ReadinessAction.WAIT, waiting_for="waiting for workers on wf-v2", wake_at=T0 + timedelta(seconds=600)
            ),
        ),
        (
            snapshot(0, 600),
            ReadinessPlan(
                ReadinessAction.FAIL,
                detail="no worker polled task queue wf-v2 within 600 s (--ready-timeout): start the version's "
                "workers, then deploy again; nothing was routed to it",
            ),
        ),
        (
            snapshot(0, 31, timeout_s=30, poll_s=5),
            ReadinessPlan(
                ReadinessAction.FAIL,
                detail="no worker polled task queue wf-v2 within 30 s (--ready-timeout): start the version's "
                "workers, then deploy again; nothing was routed to it",
            ),
        ),
    ],
    ids=[
        "a worker polls at once: proceed",
        "a worker polls just before the timeout: proceed",
        "a poller wins over an expired timeout",
        "nobody polls: wait one poll interval",
        "the last wait ends at the deadline, not past it",
        "nobody polled within the timeout: WorkersNotReady",
        "a short timeout, a long poll: fail at the first look past it",
    ],
)
def test_plan_readiness(observed: ReadinessSnapshot, plan: ReadinessPlan) -> None:
    assert plan_readiness(observed) == plan


def test_a_worker_that_comes_late_is_waited_for_on_a_virtual_clock() -> None:
    """The loop the deployment runs: look, wait until ``wake_at``; the worker starts polling at 42.5 s."""
    now, looks = T0, 0
    while True:
        looks += 1
        pollers = 1 if now >= T0 + timedelta(seconds=42.5) else 0
        plan = plan_readiness(
            ReadinessSnapshot(
                task_queue=QUEUE, pollers=pollers, waiting_since=T0, now=now, timeout_s=600, poll_interval_s=2
            )
        )
        if plan.action is not ReadinessAction.WAIT:
            break
        assert plan.waiting_for == waiting_for_workers(QUEUE)
        assert plan.wake_at is not None
        now = plan.wake_at
    assert (plan.action, now - T0, looks) == (ReadinessAction.PROCEED, timedelta(seconds=44), 23)
