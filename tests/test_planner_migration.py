"""Migration's decisions (``planner.migration``): eligibility (the one rule the activity and the simulation share),
what to do next, and what to do once the old queue drained."""

from __future__ import annotations

import pytest
from tests.planner_factories import WORKFLOW, flag

from diachronic.ci.planner import migration
from diachronic.ci.planner.migration import MigrationAction, MigrationSelection, RunOnQueue
from diachronic.ci.planner.retire import RetireBlocker, RetirePlan
from diachronic.flags import VersionFlag
from diachronic.flags.evaluation import choose

NEW_QUEUE = f"{WORKFLOW}-v2"


def runs(count: int, workflow_type: str = WORKFLOW) -> list[RunOnQueue]:
    return [RunOnQueue(f"{workflow_type}-{i}", f"run-{workflow_type}-{i}", workflow_type) for i in range(count)]


def select(
    on_queue: list[RunOnQueue], flags: list[VersionFlag], *, already: list[str] | None = None, batch: int = 100
) -> MigrationSelection:
    return migration.select_runs(
        on_queue,
        flags,
        workflow_name=WORKFLOW,
        to_task_queue=NEW_QUEUE,
        already_signalled=already or [],
        batch_size=batch,
    )


def test_every_run_is_eligible_once_the_new_version_routes_everything() -> None:
    chosen = select(runs(5), [flag(1, "v2"), flag(0, "v1")])
    assert chosen == MigrationSelection(batch=tuple(runs(5)), eligible=5, left=0, still_signalled=())


def test_only_runs_the_flags_route_to_the_new_version_are_eligible_exactly_as_unleash_routes_them() -> None:
    flags = [flag(1, "v2", 30), flag(0, "v1")]
    on_queue = runs(200)
    routed = [r for r in on_queue if (c := choose(flags, r.workflow_id, False)) and c.info.task_queue == NEW_QUEUE]
    chosen = select(on_queue, flags)
    assert chosen.batch == tuple(routed) and chosen.eligible == len(routed) and 30 < len(routed) < 90


def test_other_workflow_types_on_the_queue_are_never_signalled() -> None:
    chosen = select([*runs(2), *runs(3, "helper")], [flag(1, "v2"), flag(0, "v1")])
    assert [r.workflow_type for r in chosen.batch] == [WORKFLOW, WORKFLOW] and chosen.eligible == 2


def test_a_batch_is_bounded_and_runs_signalled_before_are_not_signalled_again() -> None:
    on_queue = runs(10)
    chosen = select(on_queue, [flag(1, "v2"), flag(0, "v1")], already=["run-wf-0", "run-wf-1", "gone"], batch=3)
    assert chosen == MigrationSelection(
        batch=tuple(on_queue[2:5]), eligible=10, left=5, still_signalled=("run-wf-0", "run-wf-1")
    )


@pytest.mark.parametrize(
    ("eligible", "running", "action"),
    [(5, 10, MigrationAction.SIGNAL_MORE), (0, 10, MigrationAction.WAIT), (0, 0, MigrationAction.RETIRE)],
    ids=["more to signal: at once", "waiting for the rest to leave", "drained: try to retire"],
)
def test_next_migration_action(eligible: int, running: int, action: MigrationAction) -> None:
    assert migration.next_migration_action(eligible_unsignalled=eligible, running_on_old_queue=running) is action


@pytest.mark.parametrize(
    ("plan", "action"),
    [
        (RetirePlan(archive_flag=True, delete_workers=True), MigrationAction.RETIRE),
        (RetirePlan(archive_flag=True, kept_workers="live again"), MigrationAction.RETIRE),
        (RetirePlan(RetireBlocker.ROUTED), MigrationAction.WAIT),
        (RetirePlan(RetireBlocker.RUNNING), MigrationAction.WAIT),
        (RetirePlan(RetireBlocker.DEPLOYING), MigrationAction.HAND_OFF),
        (RetirePlan(RetireBlocker.DELAYED), MigrationAction.HAND_OFF),
    ],
    ids=[
        "nothing blocks: retire",
        "live again: retire the flag, keep the workers",
        "the old version still takes traffic: wait",
        "a workflow arrived meanwhile: wait",
        "a deployment of the old version waits behind this one: hand over to a cleanup (waiting would never end)",
        "the retire delay counts down: a cleanup waits it out, the CI's queue moves on",
    ],
)
def test_after_drain(plan: RetirePlan, action: MigrationAction) -> None:
    assert migration.after_drain(plan) is action
