"""Migration's eligibility rule and the routing summaries its pacing uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tests.planner_factories import WORKFLOW, flag

from diachronic.ci.planner import migration
from diachronic.ci.planner.migration import Coverage, RunOnQueue
from diachronic.flags import Constraint, FlagStrategy, VersionFlag
from diachronic.flags.evaluation import DARK_DEPLOY_CONSTRAINT, bucket, default_strategies

V1 = flag(0, "v1", 100)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
RUNS = [RunOnQueue(f"{WORKFLOW}-{i}", f"run-{i}", WORKFLOW, T0 + timedelta(seconds=i)) for i in range(200)]


def half(seq: int = 1, version: str = "v2") -> VersionFlag:
    return flag(seq, version, 50)


def test_select_runs_keeps_the_runs_the_flags_route_to_the_new_queue_in_page_order() -> None:
    v2 = half()
    chosen = migration.select_runs(RUNS, [V1, v2], workflow_name=WORKFLOW, to_task_queue=v2.info.task_queue)
    expected = [r for r in RUNS if bucket(v2.info.flag_name, r.workflow_id) <= 50]
    assert chosen == expected and 0 < len(chosen) < len(RUNS)


def test_select_runs_skips_other_workflow_types_on_the_queue() -> None:
    v2 = flag(1, "v2", 100)
    other = RunOnQueue("other-1", "run-x", "other", T0)
    assert (
        migration.select_runs([other, *RUNS[:3]], [v2, V1], workflow_name=WORKFLOW, to_task_queue="wf-v2") == (RUNS[:3])
    )


def test_select_runs_orders_the_flags_itself_newest_wins() -> None:
    v2, v3 = flag(1, "v2", 100), flag(2, "v3", 100)
    assert migration.select_runs(RUNS, [v2, v3, V1], workflow_name=WORKFLOW, to_task_queue="wf-v2") == []


def test_select_runs_skips_what_an_earlier_clean_sweep_covered() -> None:
    at_20, at_50 = flag(1, "v2", 20), flag(1, "v2", 50)
    covered = Coverage(flags=[V1, at_20], before=T0 + timedelta(seconds=100))
    chosen = migration.select_runs(RUNS, [V1, at_50], workflow_name=WORKFLOW, to_task_queue="wf-v2", covered=covered)
    name = at_50.info.flag_name  # one groupId: the buckets under 20 % are within those under 50 %

    def expected(run: RunOnQueue) -> bool:
        routed = bucket(name, run.workflow_id) <= 50
        signalled_at_20 = bucket(name, run.workflow_id) <= 20 and run.started < covered.before
        return routed and not signalled_at_20

    assert chosen == [r for r in RUNS if expected(r)]
    assert any(bucket(name, r.workflow_id) <= 20 for r in chosen)  # started after the watermark: signalled now


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
