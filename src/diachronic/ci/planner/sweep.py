"""Sweeps: how the migration reads the old queue, and when it reads it again.

A **sweep** is one pass over the running workflows of the workflow type on the old task queue, in visibility's
order, one page (``batch_size`` runs) at a time: the migrate activity signals the eligible runs of a page
(``planner.migration.select_runs``) while it reads the next one. Its position is visibility's page token, the
**cursor**. The migration workflow carries the cursor of the sweep in progress in its state and the activity
heartbeats it after each page, so a retried attempt, a restarted worker or a run that continued-as-new goes on from
where the sweep stopped. Each call of the activity gets the flags the workflow has just read. A sweep is a cursor,
counters and those flags: nothing here grows with the number of workflows. Exactly-once per run is Temporal's
request-id de-duplication: a run signalled again (a page read again after a retry) receives one signal.

Visibility's order is newest start first, and its page token is a position in that order, so runs that start while
a sweep goes on are not in it. Two kinds of sweep:

- **full**: every running workflow of the type on the old queue;
- **recent**: only those started since the last clean sweep's **watermark** (the time it began, less a margin).
  Under unchanged routing the runs an earlier sweep read were signalled or are not eligible; only arrivals can be
  (a workflow that continued-as-new on the old queue, a start that raced with a flag change).

A sweep is **clean** when one routing held for all of it, every signal it sent was accepted (or the run was gone),
and it was not a canary cohort's (which signals a few eligible runs only, ``planner.canary``). A clean sweep
**covers** what its flags route to the new queue and started before its watermark: all of that
was signalled. A full sweep after a routing change skips what the last clean sweep covered, so a rollout step
signals only the runs it made eligible (``Coverage``).

``next_sweep`` decides, whenever no sweep is in progress:

1. nothing runs on the old queue: drained (retire, if the retire rule allows it);
2. no flag routes general traffic to the new version: nothing can be eligible, look again after a poll;
3. no clean sweep yet, the last sweep not clean, or the routing differs from the last clean sweep's (a rollout
   step, a human's edit): a full sweep now;
4. the last full sweep ended ``full_sweep_every_s`` ago: a full sweep that skips nothing (for runs visibility
   showed late);
5. otherwise a recent sweep, ``poll_s`` after the last sweep ended, the pause doubling after each sweep that found
   nothing eligible (up to ``recent_pause_max_s``).

Pure: the workflow observes (running count, flags), asks here, and runs the sweep it is told to, one activity call
at a time (``record_progress`` folds each call's ``SweepProgress`` into the sweep and the log).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import Field

from diachronic.ci.planner.migration import Coverage, routing_key
from diachronic.contracts import Contract
from diachronic.flags import VersionFlag

__all__ = [
    "QueueObservation",
    "Sweep",
    "SweepAction",
    "SweepKind",
    "SweepLog",
    "SweepPacing",
    "SweepPlan",
    "SweepProgress",
    "next_sweep",
    "record_progress",
]


class SweepKind(StrEnum):
    FULL = "full"  # every running workflow of the type on the old queue
    RECENT = "recent"  # only those started since the last clean sweep's watermark


class SweepAction(StrEnum):
    SWEEP = "sweep"  # run the planned sweep now
    WAIT = "wait"  # nothing to signal now: look again at the plan's ``at``
    DRAINED = "drained"  # nothing runs on the old queue


class SweepPacing(Contract):
    """How often the migration looks at the old queue (``MigrationInput``)."""

    poll_s: float = Field(gt=0, description="between looks at the running count and the flags")
    full_sweep_every_s: float = Field(gt=0, description="a full sweep at least this often, routing unchanged")
    recent_pause_max_s: float = Field(gt=0, description="the longest pause between recent sweeps")


class SweepProgress(Contract):
    """What one call of the migrate activity did in a sweep; also its heartbeat, so a retry goes on from there."""

    cursor: str | None = Field(default=None, description="the page to read next (visibility's page token)")
    done: bool = Field(default=False, description="the sweep read its last page")
    watermark: datetime | None = Field(default=None, description="set when the call started the sweep")
    pages: int = Field(default=0, ge=0)
    rows: int = Field(default=0, ge=0, description="visibility rows read, pages read again after a retry included")
    eligible: int = Field(default=0, ge=0, description="eligible runs it read")
    signalled: int = Field(default=0, ge=0, description="signals Temporal accepted, to runs no earlier sweep signalled")
    resent: int = Field(default=0, ge=0, description="signals accepted that an earlier sweep may have sent already")
    gone: int = Field(default=0, ge=0, description="eligible runs that had closed or moved before their signal")
    failed: int = Field(default=0, ge=0, description="signals that failed: the sweep is not clean")
    stale: bool = Field(
        default=False,
        description="it stopped: the flags no longer route as the workflow read them (page not signalled)",
    )
    resumed_at_page: int | None = Field(
        default=None, description="the page a retried attempt went on from (its last heartbeat); None: first attempt"
    )
    candidates: int | None = Field(
        default=None, ge=0, description="a cohort's sweep: the running workflows its query matched as the call began"
    )
    cohort_target: int | None = Field(default=None, ge=0, description="the cohort's size, as this call fixed it")

    @property
    def stalled(self) -> bool:
        """It stopped before its first page: the flags changed since the workflow read them. Read them again after a
        pause (were they to change all the time, calls would otherwise follow each other without end)."""
        return self.stale and self.pages == 0

    def call_done(self, pages: int) -> bool:
        """The call has nothing left to do: the sweep is over, it read its ``pages``, or the flags changed under it
        (an earlier attempt may have got there, and only its reply was lost)."""
        return self.done or self.stale or self.pages >= pages

    def after_page(
        self,
        *,
        cursor: str | None,
        rows: int,
        eligible: int,
        signalled: int,
        resent: int = 0,
        gone: int = 0,
        failed: int = 0,
    ) -> SweepProgress:
        """One more page read and its eligible runs signalled; ``cursor`` None: it was the sweep's last page."""
        return self.model_copy(
            update={
                "cursor": cursor,
                "done": cursor is None,
                "pages": self.pages + 1,
                "rows": self.rows + rows,
                "eligible": self.eligible + eligible,
                "signalled": self.signalled + signalled,
                "resent": self.resent + resent,
                "gone": self.gone + gone,
                "failed": self.failed + failed,
            }
        )


class Sweep(Contract):
    """The sweep in progress, as the migration workflow carries it."""

    kind: SweepKind
    since: datetime | None = Field(default=None, description="recent sweeps: the watermark they start from")
    covered: Coverage | None = Field(default=None, description="what it skips: signalled by an earlier clean sweep")
    recheck: bool = Field(default=False, description="signal what it covers again (the periodic full sweep)")
    cohort: bool = Field(default=False, description="a canary cohort's sweep: it signals a few, so it covers nothing")
    started_at: datetime
    cursor: str | None = None
    watermark: datetime | None = None
    routing: str | None = Field(default=None, description="routing key of its first call")
    routing_changed: bool = False
    calls: int = 0
    pages: int = 0
    rows: int = 0
    eligible: int = 0
    signalled: int = 0
    resent: int = 0
    failed: int = 0


class SweepLog(Contract):
    """What pacing remembers of the sweeps that ended, and their totals."""

    covered: Coverage | None = Field(default=None, description="what the last clean sweep signalled")
    dirty: bool = Field(default=False, description="the last sweep was not clean: the next one is full")
    last_full_at: datetime | None = None
    last_end_at: datetime | None = None
    quiet: int = Field(default=0, ge=0, description="sweeps in a row that found nothing eligible")
    sweeps: int = 0
    full_sweeps: int = 0
    rows: int = Field(default=0, description="visibility rows read by every sweep")
    signalled: int = Field(default=0, description="signals accepted by every sweep, each to a run signalled once")
    resent: int = Field(default=0, description="signals an earlier sweep may have sent already (Temporal drops them)")
    eligible: int = Field(default=0, description="eligible runs the last finished sweep met")


@dataclass(frozen=True)
class QueueObservation:
    """What the migration sees between sweeps."""

    running_on_old_queue: int
    routing: str  # ``planner.migration.routing_key`` of the live flags
    routes_new: bool  # ``planner.migration.may_route_to`` the new queue


@dataclass(frozen=True)
class SweepPlan:
    action: SweepAction
    reason: str
    sweep: Sweep | None = None  # SWEEP: the sweep to start
    at: datetime | None = None  # WAIT: when to look again (a poll at most: the old queue may drain meanwhile)
    sweep_due: datetime | None = None  # WAIT: when the next sweep runs if nothing changes (None: not planned)

    @property
    def branch(self) -> SweepAction:
        return self.action


def next_sweep(log: SweepLog, observed: QueueObservation, now: datetime, pacing: SweepPacing) -> SweepPlan:
    """What the migration does when no sweep is in progress (the rules of the module docstring, in order)."""
    if observed.running_on_old_queue == 0:
        return SweepPlan(SweepAction.DRAINED, "nothing runs on the old queue")
    poll = timedelta(seconds=pacing.poll_s)
    if not observed.routes_new:
        return SweepPlan(SweepAction.WAIT, "no flag routes new starts to the new version yet", at=now + poll)
    covered = log.covered
    if covered is None or log.dirty or routing_key(covered.flags) != observed.routing:
        reason = "first sweep" if log.sweeps == 0 else "the routing changed since the last clean sweep"
        return _start(SweepKind.FULL, reason, now, covered=covered)
    full_due = (log.last_full_at or now) + timedelta(seconds=pacing.full_sweep_every_s)
    if now >= full_due:
        return _start(SweepKind.FULL, f"one every {pacing.full_sweep_every_s:g} s", now, covered=covered, recheck=True)
    pause = min(pacing.poll_s * 2**log.quiet, pacing.recent_pause_max_s)
    recent_due = (log.last_end_at or now) + timedelta(seconds=pause)
    if now >= recent_due:
        reason = "routing unchanged: runs started since the last sweep"
        return _start(SweepKind.RECENT, reason, now, since=covered.certain, covered=covered)
    due = min(recent_due, full_due)
    return SweepPlan(
        SweepAction.WAIT,
        f"routing unchanged: a recent sweep every {pause:g} s, a full one every {pacing.full_sweep_every_s:g} s",
        at=min(due, now + poll),
        sweep_due=due,
    )


def _start(
    kind: SweepKind,
    reason: str,
    now: datetime,
    *,
    since: datetime | None = None,
    covered: Coverage | None = None,
    recheck: bool = False,
) -> SweepPlan:
    sweep = Sweep(kind=kind, since=since, covered=covered, recheck=recheck, started_at=now)
    return SweepPlan(SweepAction.SWEEP, f"{kind.value} sweep: {reason}", sweep=sweep)


def record_progress(
    sweep: Sweep, log: SweepLog, progress: SweepProgress, flags: Sequence[VersionFlag], now: datetime
) -> tuple[Sweep | None, SweepLog]:
    """Fold one call's progress (made under ``flags``) into the sweep; when the sweep is done, into the log (and the
    sweep ends: None). A clean sweep covers what its flags route to the new queue, up to its watermark."""
    routing = routing_key(flags)
    sweep = sweep.model_copy(
        update={
            "cursor": progress.cursor,
            "watermark": sweep.watermark or progress.watermark,
            "routing": sweep.routing or routing,
            "routing_changed": sweep.routing_changed or progress.stale or (sweep.routing not in (None, routing)),
            "calls": sweep.calls + 1,
            "pages": sweep.pages + progress.pages,
            "rows": sweep.rows + progress.rows,
            "eligible": sweep.eligible + progress.eligible,
            "signalled": sweep.signalled + progress.signalled,
            "resent": sweep.resent + progress.resent,
            "failed": sweep.failed + progress.failed,
        }
    )
    log = log.model_copy(
        update={
            "rows": log.rows + progress.rows,
            "signalled": log.signalled + progress.signalled,
            "resent": log.resent + progress.resent,
        }
    )
    if not progress.done:
        return sweep, log
    clean = sweep.failed == 0 and not sweep.routing_changed and sweep.watermark is not None and not sweep.cohort
    covered = Coverage(flags=list(flags), before=sweep.watermark) if clean and sweep.watermark else log.covered
    return None, log.model_copy(
        update={
            "covered": covered,
            "dirty": not clean,
            "last_full_at": now if sweep.kind is SweepKind.FULL else log.last_full_at,
            "last_end_at": now,
            "quiet": 0 if sweep.eligible else log.quiet + 1,
            "sweeps": log.sweeps + 1,
            "full_sweeps": log.full_sweeps + (sweep.kind is SweepKind.FULL),
            "eligible": sweep.eligible,
        }
    )
