"""Migration's decisions: which runs on the old queue are eligible for the migrate signal, and what to do next.

Pure. ``select_runs`` is the one eligibility rule: the ``migrate_batch`` activity calls it on what Temporal's
visibility lists, and the simulation's fake world calls it on its own runs. The migration workflow loops:

    batch = <migrate_batch activity>          # select_runs + signals
    next_migration_action(...)                # SIGNAL_MORE at once, WAIT a poll, or try to RETIRE:
    after_drain(plan_retire(<observed>))      # RETIRE now, WAIT (the flag still routes), or HAND_OFF
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from diachronic.ci.planner.retire import RetireBlocker, RetirePlan
from diachronic.flags import VersionFlag
from diachronic.flags.evaluation import choose

__all__ = [
    "MigrationAction",
    "MigrationSelection",
    "RunOnQueue",
    "after_drain",
    "next_migration_action",
    "select_runs",
]


class MigrationAction(StrEnum):
    SIGNAL_MORE = "signal_more"  # more eligible workflows wait for their signal: go again at once
    WAIT = "wait"  # some still run on the old queue (not yet eligible, or migrating): poll again later
    RETIRE = "retire"  # nothing runs on the old queue: retire the old version (as the retire plan says)
    HAND_OFF = "hand_off"  # drained, but a deployment of the old version waits: a cleanup workflow retires it


@dataclass(frozen=True)
class RunOnQueue:
    """One running workflow on the old task queue, as visibility lists it."""

    workflow_id: str
    run_id: str
    workflow_type: str


@dataclass(frozen=True)
class MigrationSelection:
    """What one batch signals, and what is left for the next."""

    batch: tuple[RunOnQueue, ...]  # eligible and not signalled before: signal these now
    eligible: int  # runs of the workflow type that the flags route to the new version
    left: int  # eligible, not signalled before, beyond this batch
    still_signalled: tuple[str, ...]  # run ids signalled earlier that are still on the old queue


def select_runs(
    runs: Iterable[RunOnQueue],
    flags: Sequence[VersionFlag],
    *,
    workflow_name: str,
    to_task_queue: str,
    already_signalled: Sequence[str],
    batch_size: int,
) -> MigrationSelection:
    """The runs of ``workflow_name`` that the flags (evaluated as Unleash does) route to ``to_task_queue``."""
    runs = list(runs)
    running_ids = {run.run_id for run in runs}
    already = set(already_signalled)
    eligible = [
        run
        for run in runs
        if run.workflow_type == workflow_name
        and (chosen := choose(flags, run.workflow_id, False)) is not None
        and chosen.info.task_queue == to_task_queue
    ]
    todo = [run for run in eligible if run.run_id not in already]
    return MigrationSelection(
        batch=tuple(todo[:batch_size]),
        eligible=len(eligible),
        left=len(todo[batch_size:]),
        still_signalled=tuple(run_id for run_id in already_signalled if run_id in running_ids),
    )


def next_migration_action(*, eligible_unsignalled: int, running_on_old_queue: int) -> MigrationAction:
    if eligible_unsignalled > 0:
        return MigrationAction.SIGNAL_MORE
    if running_on_old_queue > 0:
        return MigrationAction.WAIT
    return MigrationAction.RETIRE


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
