"""Migration's decisions (``planner.migration``): eligibility (the one rule the activity and the simulation share),
the routing summaries the sweeps' pacing uses, and what to do once the old queue drained."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tests.planner_factories import WORKFLOW, flag

from diachronic.ci.planner import migration
from diachronic.ci.planner.migration import Coverage, MigrationAction, RunOnQueue
from diachronic.ci.planner.retire import RetireBlocker, RetirePlan
from diachronic.flags import Constraint, FlagStrategy, VersionFlag
from diachronic.flags.evaluation import DARK_DEPLOY_CONSTRAINT, bucket, default_strategies

V1 = flag(0, "v1", 100)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
RUNS = [RunOnQueue(f"{WORKFLOW}-{i}", f"run-{i}", WORKFLOW, T0 + timedelta(seconds=i)) for i in range(200)]


def half(seq: int = 1, version: str = "v2") -> VersionFlag:
    return flag(seq, version, 50)


def select(flags: list[VersionFlag], covered: Coverage | None = None, *, recheck: bool = False) -> migration.Selection:
    return migration.select_runs(
        RUNS, flags, workflow_name=WORKFLOW, to_task_queue="wf-v2", covered=covered, recheck=recheck
    )


def test_select_runs_keeps_the_runs_the_flags_route_to_the_new_queue_in_page_order() -> None:
    v2 = half()
    chosen = select([V1, v2])
    expected = [r for r in RUNS if bucket(v2.info.flag_name, r.workflow_id) <= 50]
    assert chosen == migration.Selection(first=expected, again=[], skipped=0)
    assert chosen.runs == expected and chosen.eligible == len(expected) and 0 < len(expected) < len(RUNS)


@pytest.mark.parametrize("at_most", [0, 1, 3, 1000])
def test_a_cohort_selects_at_most_its_remaining_members_in_page_order_and_holds_the_rest(at_most: int) -> None:
    everyone = select([V1, half()])
    chosen = migration.select_runs(RUNS, [V1, half()], workflow_name=WORKFLOW, to_task_queue="wf-v2", at_most=at_most)
    taken = min(at_most, len(everyone.first))
    assert chosen == migration.Selection(
        first=everyone.first[:taken], again=[], skipped=0, held=len(everyone.first) - taken
    )
    assert chosen.eligible == everyone.eligible  # held runs are eligible: they move after the soak


def test_select_runs_skips_other_workflow_types_on_the_queue() -> None:
    v2 = flag(1, "v2", 100)
    other = RunOnQueue("other-1", "run-x", "other", T0)
    chosen = migration.select_runs([other, *RUNS[:3]], [v2, V1], workflow_name=WORKFLOW, to_task_queue="wf-v2")
    assert chosen.runs == RUNS[:3]


def test_select_runs_orders_the_flags_itself_newest_wins() -> None:
    assert select([flag(1, "v2", 100), flag(2, "v3", 100), V1]).eligible == 0


AT_20, AT_50 = flag(1, "v2", 20), flag(1, "v2", 50)
NAME = AT_50.info.flag_name  # one groupId: the buckets under 20 % are within those under 50 %
COVERED = Coverage(flags=[V1, AT_20], before=T0 + timedelta(seconds=100))


def routed(run: RunOnQueue, percent: int) -> bool:
    return bucket(NAME, run.workflow_id) <= percent


def test_select_runs_skips_what_an_earlier_clean_sweep_certainly_signalled() -> None:
    chosen = select([V1, AT_50], COVERED)
    certain = COVERED.certain  # the sweep began at 100 s; runs of the 3 s before it may have been missing

    assert chosen.first == [r for r in RUNS if routed(r, 50) and not (routed(r, 20) and r.started < COVERED.before)]
    assert chosen.again == [r for r in RUNS if routed(r, 20) and certain <= r.started < COVERED.before]
    assert chosen.skipped == len([r for r in RUNS if routed(r, 20) and r.started < certain])
    assert chosen.eligible == len([r for r in RUNS if routed(r, 50)])
    assert chosen.again and chosen.skipped and any(routed(r, 20) for r in chosen.first)


def test_a_recheck_signals_again_what_coverage_skips() -> None:
    chosen = select([V1, AT_50], COVERED, recheck=True)
    assert chosen.skipped == 0
    assert chosen.again == [r for r in RUNS if routed(r, 20) and r.started < COVERED.before]


def test_the_routing_key_changes_with_what_routes_and_not_with_the_order_or_strategy_ids() -> None:
    v2 = half()
    key = migration.routing_key([V1, v2])
    assert migration.routing_key([v2, V1]) == key
    renumbered = v2.model_copy(update={"strategies": [s.model_copy(update={"id": "x9"}) for s in v2.strategies]})
    assert migration.routing_key([V1, renumbered]) == key
    assert migration.routing_key([V1, flag(1, "v2", 60)]) != key
    assert migration.routing_key([V1, half().model_copy(update={"enabled": False})]) != key
    assert migration.routing_key([V1, v2.model_copy(update={"archived": True})]) == migration.routing_key([V1])


def strategies_at(percent: int, *, flag_name: str = "f") -> list[FlagStrategy]:
    return default_strategies(flag_name, general_percent=percent)


@pytest.mark.parametrize(
    ("flags", "routes"),
    [
        ([V1, flag(1, "v2", 0)], False),
        ([V1, flag(1, "v2", 1)], True),
        ([V1], False),
        ([V1, flag(1, "v2", 30, enabled=False)], False),
        ([V1, flag(1, "v2", 30, archived=True)], False),
        ([V1, flag(1, "v2", None)], True),
        ([V1, half().model_copy(update={"strategies": strategies_at(0)})], False),
        ([V1, half().model_copy(update={"strategies": strategies_at(5)})], True),
        (
            [
                V1,
                half().model_copy(
                    update={"strategies": [FlagStrategy(name="default", constraints=[DARK_DEPLOY_CONSTRAINT])]}
                ),
            ],
            False,
        ),
        (
            [
                V1,
                half().model_copy(
                    update={
                        "strategies": [
                            FlagStrategy(
                                name="default",
                                constraints=[Constraint(context_name="isTest", operator="IN", values=["false"])],
                            )
                        ]
                    }
                ),
            ],
            True,
        ),
        ([V1, half().model_copy(update={"strategies": [FlagStrategy(name="gradualRolloutUserId")]})], False),
        (
            [
                V1,
                half().model_copy(
                    update={"strategies": [s.model_copy(update={"disabled": True}) for s in strategies_at(0)]}
                ),
            ],
            True,
        ),
    ],
    ids=[
        "new version at 0 %",
        "new version at 1 %",
        "no flag of the new version",
        "new version disabled",
        "new version archived",
        "no strategy at all: on for everyone",
        "dark deploy strategy only, general at 0 %",
        "general at 5 %",
        "a default strategy for test traffic only",
        "a default strategy for isTest false",
        "a strategy Unleash never matches here",
        "every strategy disabled: on for everyone",
    ],
)
def test_may_route_to_is_false_only_when_no_general_traffic_can_reach_the_new_queue(
    flags: list[VersionFlag], routes: bool
) -> None:
    assert migration.may_route_to(flags, "wf-v2") is routes


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
