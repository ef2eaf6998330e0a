"""Retire delay (``deploy --retire-delay D``, default 0): once the retire rule would delete the old version's
workers, wait D more before doing it, so a roll-back within D finds them still running (the temporal-worker-
controller's scale-down and delete delays).

Pure: the retire step of migration and cleanup asks the retire rule (``diachronic.ci.planner.retire``) on fresh
data each time it looks, and here whether the countdown has run out. Anything that makes the rule hold or keep
the workers (a workflow on the old queue again, a roll-back queued or made live again) stops the countdown; it
starts over the next time the rule would delete them.

    countdown = count_down(now, delay=D, ready=plan.delete_workers, ready_since=state.ready_since)
    plan = hold_while_counting(plan, countdown)   # RetireBlocker.DELAYED until it runs out

A migration hands a running countdown to a cleanup workflow (``planner.migration.after_drain``): the CI's queue
does not wait for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from diachronic.ci.planner.retire import RetireBlocker, RetirePlan

__all__ = ["RetireCountdown", "count_down", "hold_while_counting"]


@dataclass(frozen=True)
class RetireCountdown:
    """``retire_now``: delete the workers now. Keep ``ready_since`` in the state; status shows ``retire_at``."""

    retire_now: bool
    ready_since: datetime | None = None  # when the rule first allowed deleting the workers, without a stop since
    retire_at: datetime | None = None  # when they will be deleted if nothing changes (the countdown)


def count_down(now: datetime, *, delay: timedelta, ready: bool, ready_since: datetime | None) -> RetireCountdown:
    """``ready``: the retire rule, on data read just now, would delete the old version's workers."""
    if not ready:
        return RetireCountdown(retire_now=False)
    since = ready_since or now
    at = since + delay
    return RetireCountdown(retire_now=now >= at, ready_since=since, retire_at=at)


def hold_while_counting(plan: RetirePlan, countdown: RetireCountdown) -> RetirePlan:
    """``plan``, unless it deletes the workers before the countdown ran out: then nothing yet (not even the flag's
    archive: a roll-back within the delay finds the version as it was)."""
    if plan.delete_workers and not countdown.retire_now:
        return RetirePlan(RetireBlocker.DELAYED)
    return plan
