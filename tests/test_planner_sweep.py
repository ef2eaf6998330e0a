"""The sweeps' pacing and bookkeeping, on a virtual clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tests.planner_factories import flag

from diachronic.ci.planner.migration import Coverage, routing_key
from diachronic.ci.planner.sweep import (
    QueueObservation,
    Sweep,
    SweepAction,
    SweepKind,
    SweepLog,
    SweepPacing,
    SweepProgress,
    next_sweep,
    record_progress,
)
from diachronic.flags import VersionFlag

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PACING = SweepPacing(poll_s=2, full_sweep_every_s=1800, recent_pause_max_s=60)
AT_50 = [flag(1, "v2", 50), flag(0, "v1", 100)]
AT_80 = [flag(1, "v2", 80), flag(0, "v1", 100)]
R1, R2 = routing_key(AT_50), routing_key(AT_80)
W1 = T0 - timedelta(seconds=30)
COVERED = Coverage(flags=AT_50, before=W1)
ROUTED = QueueObservation(running_on_old_queue=100, routing=R1, routes_new=True)
CLEAN = SweepLog(covered=COVERED, last_full_at=T0, last_end_at=T0, sweeps=1, full_sweeps=1, eligible=10)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("log", "observed", "now", "action", "kind", "since", "covered", "look_at"),
    [
        (SweepLog(), ROUTED, T0, SweepAction.SWEEP, SweepKind.FULL, None, None, None),
        (CLEAN, QueueObservation(0, R1, True), at(1), SweepAction.DRAINED, None, None, None, None),
        (SweepLog(), QueueObservation(100, R1, False), T0, SweepAction.WAIT, None, None, None, at(2)),
        (CLEAN, QueueObservation(100, R2, True), at(1), SweepAction.SWEEP, SweepKind.FULL, None, COVERED, None),
        (
            CLEAN.model_copy(update={"dirty": True}),
            ROUTED,
            at(1),
            SweepAction.SWEEP,
            SweepKind.FULL,
            None,
            COVERED,
            None,
        ),
        (CLEAN, ROUTED, at(1), SweepAction.WAIT, None, None, None, at(2)),
        (CLEAN, ROUTED, at(2), SweepAction.SWEEP, SweepKind.RECENT, COVERED.certain, COVERED, None),
        (CLEAN.model_copy(update={"quiet": 3}), ROUTED, at(10), SweepAction.WAIT, None, None, None, at(12)),
        (
            CLEAN.model_copy(update={"quiet": 3}),
            ROUTED,
            at(16),
            SweepAction.SWEEP,
            SweepKind.RECENT,
            COVERED.certain,
            COVERED,
            None,
        ),
        (CLEAN.model_copy(update={"quiet": 9}), ROUTED, at(59), SweepAction.WAIT, None, None, None, at(60)),
        (CLEAN.model_copy(update={"quiet": 9}), ROUTED, at(20), SweepAction.WAIT, None, None, None, at(22)),
        (
            CLEAN.model_copy(update={"quiet": 9, "last_end_at": at(1790)}),
            ROUTED,
            at(1799),
            SweepAction.WAIT,
            None,
            None,
            None,
            at(1800),
        ),
    ],
    ids=[
        "the first sweep is a full one",
        "nothing on the old queue: drained",
        "no flag routes to the new version: wait a poll",
        "a rollout step changed the routing: full sweep, skipping what the last clean one signalled",
        "the last sweep was not clean: full sweep",
        "routing unchanged, just swept: wait a poll",
        "routing unchanged, a poll later: recent sweep from the watermark",
        "three quiet sweeps: the next sweep in 16 s, a look at the queue every poll meanwhile",
        "three quiet sweeps, 16 s later: recent sweep",
        "many quiet sweeps: the pause stops at 60 s",
        "a long pause: still a look every poll (the old queue may drain)",
        "the periodic full sweep comes before the next recent one",
    ],
)
def test_next_sweep(
    log: SweepLog,
    observed: QueueObservation,
    now: datetime,
    action: SweepAction,
    kind: SweepKind | None,
    since: datetime | None,
    covered: Coverage | None,
    look_at: datetime | None,
) -> None:
    plan = next_sweep(log, observed, now, PACING)
    assert plan.action is action, plan.reason
    assert plan.at == look_at
    if kind is None:
        assert plan.sweep is None
    else:
        assert plan.sweep == Sweep(kind=kind, since=since, covered=covered, started_at=now)


def test_while_it_waits_the_plan_says_when_the_next_sweep_runs() -> None:
    plan = next_sweep(CLEAN.model_copy(update={"quiet": 3}), ROUTED, at(10), PACING)
    assert (plan.at, plan.sweep_due) == (at(12), at(16))
    assert next_sweep(SweepLog(), QueueObservation(100, R1, False), T0, PACING).sweep_due is None


def test_half_an_hour_after_the_last_full_sweep_a_full_one_signals_again_what_it_covers() -> None:
    plan = next_sweep(CLEAN.model_copy(update={"last_end_at": at(1799)}), ROUTED, at(1800), PACING)
    assert plan.sweep == Sweep(kind=SweepKind.FULL, covered=COVERED, recheck=True, started_at=at(1800))


def page(**kw: object) -> SweepProgress:
    defaults: dict[str, object] = {"pages": 1, "rows": 1000, "eligible": 400, "signalled": 400}
    return SweepProgress.model_validate(defaults | kw)


def test_a_sweep_moves_its_cursor_call_by_call_and_ends_in_the_log() -> None:
    sweep = Sweep(kind=SweepKind.FULL, started_at=T0)
    first = page(cursor="c1", watermark=W1)
    sweep_after, log = record_progress(sweep, SweepLog(), first, AT_50, at(3))
    assert sweep_after is not None
    assert (sweep_after.cursor, sweep_after.watermark, sweep_after.routing, sweep_after.rows) == ("c1", W1, R1, 1000)
    assert (log.sweeps, log.rows, log.signalled) == (0, 1000, 400)
    last = page(cursor=None, done=True, rows=500, eligible=0, signalled=0)
    ended, log = record_progress(sweep_after, log, last, AT_50, at(5))
    assert ended is None
    assert log == SweepLog(
        covered=COVERED,
        dirty=False,
        last_full_at=at(5),
        last_end_at=at(5),
        quiet=0,
        sweeps=1,
        full_sweeps=1,
        rows=1500,
        signalled=400,
        eligible=400,
    )


@pytest.mark.parametrize(
    ("second", "flags", "clean"),
    [
        (page(done=True), AT_50, True),
        (page(done=True, failed=2), AT_50, False),
        (page(done=True), AT_80, False),
    ],
    ids=["clean", "some signals failed", "the flags changed between calls"],
)
def test_only_a_clean_sweep_covers_what_it_signalled(
    second: SweepProgress, flags: list[VersionFlag], clean: bool
) -> None:
    earlier = Coverage(flags=AT_80, before=W1 - timedelta(hours=1))
    old = SweepLog(covered=earlier, last_full_at=T0, last_end_at=T0, sweeps=1)
    sweep = Sweep(kind=SweepKind.RECENT, since=W1, started_at=at(10))
    sweep, log = record_progress(sweep, old, page(cursor="c1", watermark=at(-20)), AT_50, at(11))
    assert sweep is not None
    _, log = record_progress(sweep, log, second, flags, at(12))
    assert log.covered == (Coverage(flags=flags, before=at(-20)) if clean else earlier)
    assert log.dirty is not clean
    assert log.last_full_at == T0 and log.last_end_at == at(12)  # a recent sweep is no full one
    observed = QueueObservation(running_on_old_queue=5, routing=routing_key(flags), routes_new=True)
    plan = next_sweep(log, observed, at(20), PACING)
    assert plan.sweep is not None and plan.sweep.kind is (SweepKind.RECENT if clean else SweepKind.FULL)


def test_a_canary_cohorts_sweep_covers_nothing_so_the_next_sweep_is_full_and_skips_nothing() -> None:
    cohort = Sweep(kind=SweepKind.FULL, cohort=True, started_at=T0)
    ended, log = record_progress(
        cohort, SweepLog(), page(done=True, watermark=W1, eligible=40, signalled=5), AT_50, at(3)
    )
    assert ended is None and log.covered is None and log.dirty
    observed = QueueObservation(running_on_old_queue=35, routing=R1, routes_new=True)
    plan = next_sweep(log, observed, at(4), PACING)
    assert plan.sweep is not None and plan.sweep.kind is SweepKind.FULL and plan.sweep.covered is None


def test_quiet_sweeps_are_counted_and_one_that_finds_work_resets_them() -> None:
    log = SweepLog(quiet=4)
    recent = Sweep(kind=SweepKind.RECENT, started_at=T0)
    _, log = record_progress(recent, log, page(done=True, eligible=0), AT_50, at(1))
    assert log.quiet == 5
    _, log = record_progress(recent, log, page(done=True, eligible=1), AT_50, at(2))
    assert log.quiet == 0


def test_a_call_is_done_when_the_sweep_ended_or_its_pages_were_read() -> None:
    assert page(done=True).call_done(10)
    assert page(pages=10).call_done(10)
    assert not page(pages=9).call_done(10)


def test_progress_after_a_page() -> None:
    progress = SweepProgress().after_page(cursor="c", rows=3, eligible=2, signalled=1, gone=1)
    assert (progress.pages, progress.rows, progress.eligible, progress.signalled, progress.gone, progress.done) == (
        1,
        3,
        2,
        1,
        1,
        False,
    )
    assert progress.after_page(cursor=None, rows=0, eligible=0, signalled=0).done


def test_a_call_that_met_other_flags_leaves_the_sweep_unclean_and_stalls_only_before_its_first_page() -> None:
    sweep = Sweep(kind=SweepKind.FULL, started_at=T0)
    stopped = page(cursor="c1", watermark=W1, stale=True)
    assert stopped.call_done(10) and not stopped.stalled
    assert SweepProgress(cursor="c0", stale=True).stalled
    going, log = record_progress(sweep, SweepLog(), stopped, AT_50, at(1))
    assert going is not None and going.routing_changed
    _, log = record_progress(going, log, page(done=True), AT_80, at(2))
    assert log.dirty and log.covered is None
