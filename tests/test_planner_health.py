"""The health analysis: which rule fires on which evidence, and the numbers kept per step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from diachronic.ci.contracts import (
    HealthObservation,
    HealthRule,
    HealthThresholds,
    HealthVerdict,
    StepHealth,
    VersionHealth,
)
from diachronic.ci.planner.health import MAX_STEPS, judge_health, record_step

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
DEFAULTS = HealthThresholds()  # 20 %, 5 runs


def new(**counts: Any) -> VersionHealth:
    return VersionHealth(**{"task_queue": "wf-v3", "task_problems": 0, **counts})


def old(**counts: Any) -> VersionHealth:
    return VersionHealth(**{"task_queue": "wf-v2", "task_problems": 0, **counts})


def verdict(rule: HealthRule | None, detail: str, n: VersionHealth, o: VersionHealth) -> HealthVerdict:
    return HealthVerdict(rule=rule, detail=detail, new=n, old=o, at=NOW)


HEALTHY_NEW = new(closed=8)
HEALTHY_OLD = old(closed=20, failed=1)
STUCK = new(closed=1, task_problems=2, examples=["s-1", "s-2"])
MOVED_AND_FAILED = new(closed=1, failed=1, migrated_failed=1, examples=["m-1"])
BROKEN = new(closed=6, failed=4, timed_out=1, examples=["b-1", "b-2", "b-3", "b-4", "b-5"])


@pytest.mark.parametrize(
    ("n", "o", "thresholds", "expected"),
    [
        (
            HEALTHY_NEW,
            HEALTHY_OLD,
            DEFAULTS,
            verdict(
                None,
                "healthy: 0 of 8 closed (failed 0, timed out 0, terminated 0); previous: 1 of 20 closed (failed 1, "
                "timed out 0, terminated 0)",
                HEALTHY_NEW,
                HEALTHY_OLD,
            ),
        ),
        (
            STUCK,
            HEALTHY_OLD,
            DEFAULTS,
            verdict(
                HealthRule.TASK_PROBLEMS,
                "2 workflow(s) on wf-v3 are stuck on failing workflow tasks (TemporalReportedProblems); 0 on wf-v2",
                STUCK,
                HEALTHY_OLD,
            ),
        ),
        (
            new(closed=3, task_problems=None),
            old(task_problems=None),
            DEFAULTS,
            verdict(
                None,
                "healthy: 0 of 3 closed (failed 0, timed out 0, terminated 0); previous: 0 of 0 closed (failed 0, "
                "timed out 0, terminated 0)",
                new(closed=3, task_problems=None),
                old(task_problems=None),
            ),
        ),
        (
            MOVED_AND_FAILED,
            HEALTHY_OLD,
            DEFAULTS,
            verdict(
                HealthRule.MIGRATED_FAILED,
                "1 workflow(s) failed on wf-v3 after moving there from wf-v2",
                MOVED_AND_FAILED,
                HEALTHY_OLD,
            ),
        ),
        (
            new(closed=4, failed=1, task_problems=1, migrated_failed=1),
            old(),
            DEFAULTS,
            verdict(
                HealthRule.TASK_PROBLEMS,
                "1 workflow(s) on wf-v3 are stuck on failing workflow tasks (TemporalReportedProblems); 0 on wf-v2",
                new(closed=4, failed=1, task_problems=1, migrated_failed=1),
                old(),
            ),
        ),
        (
            BROKEN,
            old(closed=2),
            DEFAULTS,
            verdict(
                HealthRule.FAILURE_RATE,
                "83% of the runs closed on wf-v3 did not succeed (5 of 6 closed (failed 4, timed out 1, terminated "
                "0)), above --max-failure-rate 20%; previous version: no baseline yet",
                BROKEN,
                old(closed=2),
            ),
        ),
        (
            BROKEN,
            HEALTHY_OLD,
            DEFAULTS,
            verdict(
                HealthRule.FAILURE_RATE,
                "83% of the runs closed on wf-v3 did not succeed (5 of 6 closed (failed 4, timed out 1, terminated "
                "0)), above --max-failure-rate 20%; previous version: 5% on wf-v2 (1 of 20 closed (failed 1, timed "
                "out 0, terminated 0))",
                BROKEN,
                HEALTHY_OLD,
            ),
        ),
        (
            BROKEN,
            old(closed=10, failed=9),
            DEFAULTS,
            verdict(
                None,
                "healthy: 5 of 6 closed (failed 4, timed out 1, terminated 0); previous: 9 of 10 closed (failed 9, "
                "timed out 0, terminated 0)",
                BROKEN,
                old(closed=10, failed=9),
            ),
        ),
        (
            new(closed=5, failed=1),
            old(),
            DEFAULTS,
            verdict(
                None,
                "healthy: 1 of 5 closed (failed 1, timed out 0, terminated 0); previous: 0 of 0 closed (failed 0, "
                "timed out 0, terminated 0)",
                new(closed=5, failed=1),
                old(),
            ),
        ),
        (
            new(closed=4, failed=4),
            old(),
            DEFAULTS,
            verdict(
                None,
                "healthy: 4 of 4 closed (failed 4, timed out 0, terminated 0); previous: 0 of 0 closed (failed 0, "
                "timed out 0, terminated 0)",
                new(closed=4, failed=4),
                old(),
            ),
        ),
        (
            new(closed=2, terminated=1),
            old(),
            HealthThresholds(max_failure_rate=0.1, min_sample=2),
            verdict(
                HealthRule.FAILURE_RATE,
                "50% of the runs closed on wf-v3 did not succeed (1 of 2 closed (failed 0, timed out 0, terminated "
                "1)), above --max-failure-rate 10%; previous version: no baseline yet",
                new(closed=2, terminated=1),
                old(),
            ),
        ),
    ],
    ids=[
        "both healthy",
        "a stuck workflow fires at once, whatever the sample",
        "a server without TemporalReportedProblems: judged on the rest",
        "a workflow that failed after moving fires at once",
        "task problems are named first",
        "a broken build with no baseline yet",
        "a broken build against a healthy previous version",
        "no worse than the previous version: not aborted",
        "at the threshold, not above it: healthy",
        "below the minimum sample: not judged yet",
        "thresholds from the deploy options; a terminate counts",
    ],
)
def test_judge_health(
    n: VersionHealth, o: VersionHealth, thresholds: HealthThresholds, expected: HealthVerdict
) -> None:
    assert judge_health(HealthObservation(new=n, old=o, percent=10), thresholds, NOW) == expected


def observation(percent: int | None, closed: int) -> HealthObservation:
    return HealthObservation(new=new(closed=closed), old=old(closed=closed), percent=percent)


def test_record_step_keeps_the_last_numbers_of_each_percentage() -> None:
    steps: list[StepHealth] = []
    for minute, (percent, closed) in enumerate([(10, 1), (10, 2), (20, 3), (20, 4), (100, 9), (0, 9)]):
        steps = record_step(steps, observation(percent, closed), NOW + timedelta(minutes=minute))
    assert steps == [
        StepHealth(percent=10, new=new(closed=2), old=old(closed=2), at=NOW + timedelta(minutes=1)),
        StepHealth(percent=20, new=new(closed=4), old=old(closed=4), at=NOW + timedelta(minutes=3)),
        StepHealth(percent=100, new=new(closed=9), old=old(closed=9), at=NOW + timedelta(minutes=4)),
        StepHealth(percent=0, new=new(closed=9), old=old(closed=9), at=NOW + timedelta(minutes=5)),
    ]


def test_record_step_is_bounded() -> None:
    steps: list[StepHealth] = []
    for i in range(3 * MAX_STEPS):
        steps = record_step(steps, observation(i % 2, i), NOW)
    assert len(steps) == MAX_STEPS
    assert steps[-1].new.closed == 3 * MAX_STEPS - 1
