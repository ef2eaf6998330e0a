"""Health analysis: is the new version worse than the old one, by Temporal's own records?

From the first traffic until the deployment ends, the health workflow reads both versions over the same window
(an activity: visibility counts of runs closed failed / timed out / terminated per run closed, the workflows
Temporal flags with ``TemporalReportedProblems``, workflows that failed after moving to the new version) and asks
``judge_health``. The first rule that fires aborts the deployment:

1. ``task-problems``: a workflow of the new version is stuck on failing workflow tasks (non-determinism, code that
   raises): never normal, whatever the old version does.
2. ``migrated-failed``: a workflow failed on the new version after the migration moved it there (a rejected
   continuation, or code that fails on the state it was handed): the old version was running it.
3. ``failure-rate``: of the new version's runs closed in the window, more than ``max_failure_rate`` failed, timed out
   or were terminated, with at least ``min_sample`` closed, and more than the old version's rate over the same window
   (a version no worse than the one it replaces is not aborted; with fewer than ``min_sample`` closed runs, the old
   rate is not a baseline).

The verdict carries the evidence: both versions' counts, up to ten failing workflow ids, the rule and its text.
``record_step`` keeps the numbers per percentage the new version held, for status and the dashboard.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from diachronic.ci.contracts import (
    HealthObservation,
    HealthRule,
    HealthThresholds,
    HealthVerdict,
    StepHealth,
    VersionHealth,
)

__all__ = ["HEALTH_CHECK_FAILED", "MAX_STEPS", "failure_rate", "judge_health", "record_step"]

MAX_STEPS = 101
"""Percentages held by one deployment (0..100): what ``record_step`` keeps at most."""
HEALTH_CHECK_FAILED = "HealthCheckFailed"
"""The typed reason of a deployment the health analysis aborted."""


def failure_rate(health: VersionHealth) -> float:
    return health.failures / health.closed if health.closed else 0.0


def judge_health(observation: HealthObservation, thresholds: HealthThresholds, now: datetime) -> HealthVerdict:
    """The first rule that fires, with the evidence (see the module's docstring); ``rule`` None when healthy."""
    new, old = observation.new, observation.old
    rule, detail = _breach(new, old, thresholds)
    return HealthVerdict(
        rule=rule, detail=detail or f"healthy: {_counts(new)}; previous: {_counts(old)}", new=new, old=old, at=now
    )


def _breach(
    new: VersionHealth, old: VersionHealth, thresholds: HealthThresholds
) -> tuple[HealthRule | None, str | None]:
    if new.task_problems:
        return HealthRule.TASK_PROBLEMS, (
            f"{new.task_problems} workflow(s) on {new.task_queue} are stuck on failing workflow tasks "
            f"(TemporalReportedProblems); {old.task_problems or 0} on {old.task_queue}"
        )
    if new.migrated_failed:
        return HealthRule.MIGRATED_FAILED, (
            f"{new.migrated_failed} workflow(s) failed on {new.task_queue} after moving there from {old.task_queue}"
        )
    rate, old_rate = failure_rate(new), failure_rate(old)
    baseline = old.closed >= thresholds.min_sample
    if new.closed >= thresholds.min_sample and rate > thresholds.max_failure_rate and (not baseline or rate > old_rate):
        compared = f"{old_rate:.0%} on {old.task_queue} ({_counts(old)})" if baseline else "no baseline yet"
        return HealthRule.FAILURE_RATE, (
            f"{rate:.0%} of the runs closed on {new.task_queue} did not succeed ({_counts(new)}), above "
            f"--max-failure-rate {thresholds.max_failure_rate:.0%}; previous version: {compared}"
        )
    return None, None


def _counts(health: VersionHealth) -> str:
    return (
        f"{health.failures} of {health.closed} closed (failed {health.failed}, timed out {health.timed_out}, "
        f"terminated {health.terminated})"
    )


def record_step(steps: Sequence[StepHealth], observation: HealthObservation, now: datetime) -> list[StepHealth]:
    """The numbers per percentage held: the entry of the current percentage is replaced, a new one appended."""
    entry = StepHealth(percent=observation.percent, new=observation.new, old=observation.old, at=now)
    kept = list(steps)
    if kept and kept[-1].percent == observation.percent:
        kept[-1] = entry
    else:
        kept.append(entry)
    return kept[-MAX_STEPS:]
