"""Readiness: no traffic and no migrate signal reach a version before a worker polls its task queue.

A deployment looks at the new version's task queue (Temporal's DescribeTaskQueue, an activity) before it creates
the version's flag, since the flag's dark strategy routes ``isTest`` traffic the moment it exists:

    plan = plan_readiness(ReadinessSnapshot(task_queue=q, pollers=0, waiting_since=t0, now=now, ...))
    PROCEED -> a worker polls: go on (create the flag, run the gate, roll out)
    WAIT    -> status shows ``plan.waiting_for`` (``waiting for workers on <queue>``); look again at ``wake_at``
               (after the poll interval at first, a tenth of the time waited later, at most ``MAX_READY_POLL_S``)
    FAIL    -> the deployment ends, failed with ``WorkersNotReady`` (``plan.detail`` says where and how long)

The migration starts only after this (so its first signal goes to a polled queue), and the old version's workers
are not retired while the new queue has no poller. Workers that vanish mid-migration do not stop it: a workflow
signalled then continues as new on the new queue and waits there, in Temporal, until a worker polls again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

__all__ = [
    "MAX_READY_POLL_S",
    "WORKERS_NOT_READY",
    "ReadinessAction",
    "ReadinessPlan",
    "ReadinessSnapshot",
    "plan_readiness",
    "waiting_for_workers",
]

WORKERS_NOT_READY = "WorkersNotReady"
"""The typed reason of a deployment whose version's workers never polled within the ready timeout."""
MAX_READY_POLL_S = 30.0
"""The longest pause between two looks: a wait looks often at first, then every tenth of the time waited."""


class ReadinessAction(StrEnum):
    PROCEED = "proceed"  # a worker polls the new queue
    WAIT = "wait"  # nobody polls yet: look again later
    FAIL = "fail"  # nobody polled within the ready timeout


@dataclass(frozen=True)
class ReadinessSnapshot:
    task_queue: str
    pollers: int  # workers polling the queue for workflow tasks now
    waiting_since: datetime  # when the deployment began to wait for them
    now: datetime
    timeout_s: float
    poll_interval_s: float


@dataclass(frozen=True)
class ReadinessPlan:
    action: ReadinessAction
    waiting_for: str | None = None  # WAIT: what status shows
    wake_at: datetime | None = None  # WAIT: when to look again
    detail: str | None = None  # FAIL: why the deployment failed

    @property
    def branch(self) -> ReadinessAction:
        return self.action


def waiting_for_workers(task_queue: str) -> str:
    return f"waiting for workers on {task_queue}"


def plan_readiness(snapshot: ReadinessSnapshot) -> ReadinessPlan:
    """Proceed once a worker polls; wait up to the ready timeout; then fail (see the module's docstring)."""
    if snapshot.pollers > 0:
        return ReadinessPlan(ReadinessAction.PROCEED)
    deadline = snapshot.waiting_since + timedelta(seconds=snapshot.timeout_s)
    if snapshot.now >= deadline:
        return ReadinessPlan(
            ReadinessAction.FAIL,
            detail=f"no worker polled task queue {snapshot.task_queue} within {snapshot.timeout_s:g} s "
            "(--ready-timeout): start the version's workers, then deploy again; nothing was routed to it",
        )
    waited_s = (snapshot.now - snapshot.waiting_since).total_seconds()
    pause_s = min(max(snapshot.poll_interval_s, waited_s / 10), MAX_READY_POLL_S)
    poll = snapshot.now + timedelta(seconds=pause_s)
    return ReadinessPlan(
        ReadinessAction.WAIT, waiting_for=waiting_for_workers(snapshot.task_queue), wake_at=min(poll, deadline)
    )
