"""The canary cohort of a migration: move a few workflows first, watch them on the new version, then the rest.

``deploy --migrate-canary N|P% [--canary-query Q] --canary-soak D``. The migration asks ``plan_canary`` before each
batch and passes the answer's ``cohort`` to the sweep, whose selection (``planner.migration.select_runs``) signals
at most ``cohort_remaining`` runs, only among those the query matches:

    COHORT -> signal only cohort members, at most ``cohort.target - cohort.signalled`` more
    SOAK   -> signal nothing until ``soak_until``: the cohort runs on the new version while the health analysis
              watches it (one of them failing after moving aborts the deployment: rule ``migrated-failed``)
    REST   -> the soak passed: migrate everyone else as usual

The cohort is complete when ``target`` runs were signalled, or when no candidate is left (fewer workflows match than
the target); its soak counts from the sweep that completed it (a member moves at its next safe point, usually
within a second; the health analysis watches the new version all along). A percentage is of the candidates (the
running workflows of the type on the old queue that the query matches) at the first look, fixed from then on.
What the migration carries for this is a few numbers and a time, whatever the number of workflows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from diachronic.ci.contracts import CanaryOptions, CanaryPhase, CanaryProgress, Cohort
from diachronic.ci.planner.sweep import Sweep, SweepProgress
from diachronic.errors import InvalidInput

__all__ = [
    "CanaryPlan",
    "CanarySnapshot",
    "call_budget",
    "cohort_remaining",
    "cohort_sweep",
    "cohort_target",
    "look",
    "parse_canary",
    "plan_canary",
    "record_cohort",
    "start_cohort_call",
]

_MAX_COHORT = 100_000


@dataclass(frozen=True)
class CanarySnapshot:
    options: CanaryOptions | None
    now: datetime
    target: int | None = None  # the cohort's size, fixed at the first look (None: not looked yet)
    signalled: int = 0  # cohort members signalled so far
    candidates_left: int | None = None  # candidates not signalled yet, at the last look
    soak_until: datetime | None = None


@dataclass(frozen=True)
class CanaryPlan:
    phase: CanaryPhase
    cohort: Cohort | None = None  # COHORT: what the sweep may signal
    soak_until: datetime | None = None  # SOAK: when the rest may move

    @property
    def branch(self) -> CanaryPhase:
        return self.phase


def plan_canary(snapshot: CanarySnapshot) -> CanaryPlan:
    """What the migration may move now (see the module's docstring)."""
    options = snapshot.options
    if options is None:
        return CanaryPlan(CanaryPhase.REST)
    if snapshot.soak_until is not None:
        if snapshot.now >= snapshot.soak_until:
            return CanaryPlan(CanaryPhase.REST)
        return CanaryPlan(CanaryPhase.SOAK, soak_until=snapshot.soak_until)
    cohort = Cohort(options=options, target=snapshot.target, signalled=snapshot.signalled)
    if snapshot.target is None or snapshot.candidates_left is None:
        return CanaryPlan(CanaryPhase.COHORT, cohort)
    complete = snapshot.signalled >= snapshot.target or snapshot.candidates_left == 0
    if not complete:
        return CanaryPlan(CanaryPhase.COHORT, cohort)
    if snapshot.signalled == 0:
        return CanaryPlan(CanaryPhase.REST)  # nobody to watch
    return CanaryPlan(CanaryPhase.SOAK, soak_until=snapshot.now + timedelta(seconds=options.soak_s))


def look(
    options: CanaryOptions | None, carried: CanaryProgress | None, now: datetime
) -> tuple[CanaryPlan, CanaryProgress | None]:
    """``plan_canary`` over what the migration carries, and what it carries next (the phase, the soak's end once
    decided). No canary: REST, nothing carried."""
    if options is None:
        return CanaryPlan(CanaryPhase.REST), None
    carried = carried or CanaryProgress(phase=CanaryPhase.COHORT)
    plan = plan_canary(
        CanarySnapshot(options, now, carried.target, carried.signalled, carried.candidates_left, carried.soak_until)
    )
    return plan, carried.model_copy(update={"phase": plan.phase, "soak_until": plan.soak_until or carried.soak_until})


def cohort_sweep(planned: Sweep | None, plan: CanaryPlan) -> Sweep | None:
    """The sweep ``next_sweep`` planned, as a cohort's while the cohort moves (it then covers nothing)."""
    if planned is None or plan.phase is not CanaryPhase.COHORT:
        return planned
    return planned.model_copy(update={"cohort": True})


def record_cohort(carried: CanaryProgress, progress: SweepProgress) -> CanaryProgress:
    """Fold one call of a cohort's sweep in: the size it fixed, the members it signalled, and once the sweep ended
    the candidates it left (counted at the call's start, less those it signalled)."""
    left = carried.candidates_left
    if progress.done and progress.candidates is not None:
        left = max(progress.candidates - progress.signalled, 0)
    return carried.model_copy(
        update={
            "target": carried.target if carried.target is not None else progress.cohort_target,
            "signalled": carried.signalled + progress.signalled,
            "candidates_left": left,
        }
    )


def start_cohort_call(cohort: Cohort, progress: SweepProgress, candidates: int) -> SweepProgress:
    """A call of a cohort's sweep starts: it counted the candidates, and fixes the cohort's size if no look did."""
    target = cohort.target if cohort.target is not None else cohort_target(cohort.options, candidates)
    return progress.model_copy(update={"candidates": candidates, "cohort_target": target})


def call_budget(cohort: Cohort, progress: SweepProgress) -> int:
    """How many more members this call may signal: the cohort's remaining, less what the call signalled so far."""
    assert progress.candidates is not None
    fixed = cohort.model_copy(update={"target": progress.cohort_target})
    return max(cohort_remaining(fixed, progress.candidates) - progress.signalled, 0)


def cohort_target(options: CanaryOptions, candidates: int) -> int:
    """The cohort's size: N, or P % of the candidates (at least one when there is any)."""
    if options.size is not None:
        return options.size
    assert options.percent is not None
    return min(candidates, max(1, math.ceil(candidates * options.percent / 100))) if candidates else 0


def cohort_remaining(cohort: Cohort, candidates: int) -> int:
    """How many more cohort members the sweep may signal now."""
    target = cohort.target if cohort.target is not None else cohort_target(cohort.options, candidates)
    return max(target - cohort.signalled, 0)


def parse_canary(text: str) -> tuple[int | None, float | None]:
    """``"25"`` → 25 workflows; ``"5%"`` → 5 % of them."""
    value = text.strip()
    try:
        if value.endswith("%"):
            percent = float(value[:-1])
            if not 0 < percent <= 100:
                raise InvalidInput(f"--migrate-canary {text!r}: a percentage must be within (0, 100]")
            return None, percent
        size = int(value)
    except ValueError:
        raise InvalidInput(
            f"--migrate-canary {text!r}: expected a number of workflows (25) or a percentage (5%)"
        ) from None
    if not 0 < size <= _MAX_COHORT:
        raise InvalidInput(f"--migrate-canary {text!r}: a cohort is 1 to {_MAX_COHORT} workflows")
    return size, None
