"""Migration's decisions: which runs on the old queue the flags now route to the new version, and what to do once
the old queue drained.

Pure. ``select_runs`` is the one eligibility rule: the migrate activity calls it on each page that Temporal's
visibility lists, and the simulation's fake world calls it on its own runs. ``routing_key`` and ``may_route_to``
summarise the flags for the sweep's pacing (``diachronic.ci.planner.sweep``): whether the routing changed since the
last sweep, and whether any run can be eligible at all. A ``Coverage`` is what an earlier clean sweep signalled. The
migration workflow loops:

    next_sweep(<observed>)                    # SWEEP (then one migrate_sweep call per 10 pages), WAIT, or DRAINED:
    after_drain(plan_retire(<observed>))      # RETIRE now, WAIT (the flag still routes), or HAND_OFF
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import Field

from diachronic.ci.planner.retire import RetireBlocker, RetirePlan
from diachronic.contracts import Contract
from diachronic.flags import FlagStrategy, VersionFlag
from diachronic.flags.evaluation import (
    FLEXIBLE_ROLLOUT,
    choose,
    constraint_matches,
    context_properties,
    rollout_percent,
)
from diachronic.versions import sort_newest_first

__all__ = [
    "COVERAGE_MARGIN",
    "Coverage",
    "MigrationAction",
    "RunOnQueue",
    "Selection",
    "after_drain",
    "is_eligible",
    "may_route_to",
    "routing_key",
    "select_runs",
]


class MigrationAction(StrEnum):
    WAIT = "wait"  # the old queue drained, but the flag still routes traffic to it: look again later
    RETIRE = "retire"  # nothing runs on the old queue: retire the old version (as the retire plan says)
    HAND_OFF = "hand_off"  # drained, but a deployment of the old version waits: a cleanup workflow retires it


@dataclass(frozen=True)
class RunOnQueue:
    """One running workflow on the old task queue, as visibility lists it."""

    workflow_id: str
    run_id: str
    workflow_type: str
    started: datetime


COVERAGE_MARGIN = timedelta(seconds=3)
"""How long before a sweep began a run may have started and still be missing from it: room for the worker's clock
against Temporal's, and for visibility showing a new run late."""


class Coverage(Contract):
    """What an earlier clean sweep signalled: the runs these flags route to the new queue that started before it
    began (``before``, the worker's clock). Those that started more than ``COVERAGE_MARGIN`` earlier were certainly
    in it; those of the margin may have been missing, so they are signalled again (Temporal drops a repeated one)."""

    flags: list[VersionFlag] = Field(description="the flags the sweep ran under")
    before: datetime = Field(description="when the sweep began")

    @property
    def certain(self) -> datetime:
        """Runs started before this were certainly in the sweep."""
        return self.before - COVERAGE_MARGIN


@dataclass(frozen=True)
class Selection:
    """The runs of one page to signal, in the page's order."""

    first: list[RunOnQueue]  # no earlier sweep signalled them
    again: list[RunOnQueue]  # an earlier sweep may have: its margin, or a sweep that checks everything again
    skipped: int  # eligible, and an earlier sweep certainly signalled them
    held: int = 0  # eligible, and left for after a canary cohort's soak

    @property
    def runs(self) -> list[RunOnQueue]:
        return [*self.first, *self.again]

    @property
    def eligible(self) -> int:
        return len(self.first) + len(self.again) + self.skipped + self.held


def is_eligible(run: RunOnQueue, flags: Sequence[VersionFlag], *, workflow_name: str, to_task_queue: str) -> bool:
    """A run of ``workflow_name`` that the flags (evaluated as Unleash does, general traffic) route to the new queue."""
    if run.workflow_type != workflow_name:
        return False
    chosen = choose(flags, run.workflow_id, False)
    return chosen is not None and chosen.info.task_queue == to_task_queue


def select_runs(
    runs: Iterable[RunOnQueue],
    flags: Sequence[VersionFlag],
    *,
    workflow_name: str,
    to_task_queue: str,
    covered: Coverage | None = None,
    recheck: bool = False,
    at_most: int | None = None,
) -> Selection:
    """The runs of one page to signal now: the eligible ones, less those ``covered`` says were signalled already
    (with ``recheck``, those are signalled again, for runs visibility showed late); with ``at_most`` (a canary
    cohort's remaining members, ``planner.canary.cohort_remaining``), no more than that, in the page's order, the
    others held. The cohort's query narrows the page itself (the activity's visibility query). The activity and the
    simulation's world share this one rule."""
    ordered = sort_newest_first(flags)
    earlier = sort_newest_first(covered.flags) if covered is not None else []
    first: list[RunOnQueue] = []
    again: list[RunOnQueue] = []
    skipped = held = 0
    for run in runs:
        if not is_eligible(run, ordered, workflow_name=workflow_name, to_task_queue=to_task_queue):
            continue
        if at_most is not None and len(first) + len(again) >= at_most:
            held += 1
        elif (
            covered is None
            or run.started >= covered.before
            or not is_eligible(run, earlier, workflow_name=workflow_name, to_task_queue=to_task_queue)
        ):
            first.append(run)
        elif recheck or run.started >= covered.certain:
            again.append(run)
        else:
            skipped += 1
    return Selection(first=first, again=again, skipped=skipped, held=held)


def routing_key(flags: Sequence[VersionFlag]) -> str:
    """A short digest of everything in the live flags that decides routing (not the stores' strategy ids): two
    equal keys route every workflow id alike, so a sweep done under one key need not be repeated under the other."""
    live = [
        {
            "flag": flag.info.flag_name,
            "enabled": flag.enabled,
            "strategies": [strategy.model_dump(mode="json", exclude={"id"}) for strategy in flag.strategies],
        }
        for flag in sort_newest_first(flags)
        if not flag.archived
    ]
    canonical = json.dumps(live, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def may_route_to(flags: Sequence[VersionFlag], to_task_queue: str) -> bool:
    """False only when no workflow id of general traffic can be routed to ``to_task_queue``: no live, enabled flag
    carries that queue, or each of its strategies matches nothing but test traffic or rolls out 0 %. (A newer flag
    that takes every id is not considered: a sweep then finds nothing, which is safe.)"""
    for flag in flags:
        if flag.archived or not flag.enabled or flag.info.task_queue != to_task_queue:
            continue
        active = [strategy for strategy in flag.strategies if not strategy.disabled]
        if not active or any(_may_match_general_traffic(strategy) for strategy in active):
            return True
    return False


def _may_match_general_traffic(strategy: FlagStrategy) -> bool:
    if strategy.name == FLEXIBLE_ROLLOUT:
        if not rollout_percent(strategy):
            return False
    elif strategy.name != "default":
        return False
    general = context_properties(False)
    # A constraint on isTest decides alike for every id (the Dark Deploy Strategy's never matches general traffic).
    return all(constraint_matches(c, "", general) for c in strategy.constraints if c.context_name == "isTest")


def after_drain(plan: RetirePlan) -> MigrationAction:
    """The old queue is empty: retire as planned, or wait while the flag still routes traffic. A deployment of the
    old version in the CI's queue waits for this migration to end, so waiting for it here would never end: the
    retirement is handed to a cleanup workflow, which waits on its own. So is the retire delay's countdown: the
    CI's queue does not wait for it."""
    if plan.blocker in (RetireBlocker.DEPLOYING, RetireBlocker.DELAYED):
        return MigrationAction.HAND_OFF
    if plan.blocker is not None:
        return MigrationAction.WAIT
    return MigrationAction.RETIRE
