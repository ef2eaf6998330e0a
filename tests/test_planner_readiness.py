"""Readiness: proceed once a worker polls, wait up to the ready timeout, then fail with WorkersNotReady."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from diachronic.ci.planner.readiness import (
    MAX_READY_POLL_S,
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


def wait_on_a_virtual_clock(worker_at_s: float | None, *, timeout_s: float = 600) -> tuple[ReadinessPlan, float, int]:
    """The loop the deployment runs: look, wait until ``wake_at``; a worker polls from ``worker_at_s`` on."""
    now, looks = T0, 0
    while True:
        looks += 1
        pollers = 1 if worker_at_s is not None and now >= T0 + timedelta(seconds=worker_at_s) else 0
        plan = plan_readiness(
            ReadinessSnapshot(
                task_queue=QUEUE, pollers=pollers, waiting_since=T0, now=now, timeout_s=timeout_s, poll_interval_s=2
            )
        )
        if plan.action is not ReadinessAction.WAIT:
            return plan, (now - T0).total_seconds(), looks
        assert plan.waiting_for == waiting_for_workers(QUEUE)
        assert plan.wake_at is not None and plan.wake_at - now <= timedelta(seconds=MAX_READY_POLL_S)
        now = plan.wake_at


def test_a_late_worker_is_seen_within_a_tenth_of_the_time_waited() -> None:
    plan, seen_at, looks = wait_on_a_virtual_clock(42.5)
    assert plan.action is ReadinessAction.PROCEED
    assert 42.5 <= seen_at <= 42.5 * 1.1
    assert looks == 19  # every 2 s for the first 20 s, then a tenth of the time waited


def test_a_whole_ready_timeout_costs_few_looks() -> None:
    """The wait is in the CI's history: ten minutes without a worker are 50 looks, not 300."""
    plan, failed_at, looks = wait_on_a_virtual_clock(None)
    assert (plan.action, failed_at, looks) == (ReadinessAction.FAIL, 600.0, 50)
