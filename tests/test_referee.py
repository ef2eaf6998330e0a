"""The referee's judgement, without any server: routing decided exactly (checked against the real routing), and each
invariant recorded when broken and only then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from diachronic.flags import VersionFlag
from diachronic.flags.evaluation import choose
from diachronic.simulation.referee import INVARIANTS, ChildView, Referee, routes_traffic
from diachronic.simulation.world import World
from diachronic.versions import task_queue

WF = "orders"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PROBES = 2000


def world_of(*versions: tuple[str, int]) -> World:
    world = World(WF)
    for version, percent in versions:
        world.add_version(version, percent=percent)
    return world


def flags(world: World) -> list[VersionFlag]:
    return world.flags_newest_first()


def q(version: str) -> str:
    return task_queue(WF, version)


def invariants(referee: Referee) -> list[str]:
    return [v.invariant for v in referee.violations]


# ----------------------------------------------------------------------------------------------- routing


def test_a_version_shadowed_by_a_newer_one_at_100_percent_receives_nothing() -> None:
    world = world_of(("v1", 100), ("v2", 100))
    assert not routes_traffic(flags(world), q("v1"))
    assert routes_traffic(flags(world), q("v2"))


def test_a_newer_version_below_100_percent_leaves_some_traffic_to_the_older_one() -> None:
    world = world_of(("v1", 100), ("v2", 99))
    assert routes_traffic(flags(world), q("v1"))


def test_test_traffic_goes_to_the_newest_flag_even_at_0_percent() -> None:
    world = world_of(("v1", 100), ("v2", 0))
    assert routes_traffic(flags(world), q("v2"))  # the dark deploy strategy: isTest at 100 %


def test_a_disabled_general_strategy_at_100_percent_shadows_nothing() -> None:
    world = world_of(("v1", 100), ("v2", 100))
    world.hand_disable_general("v2")
    assert routes_traffic(flags(world), q("v1"))


PERCENTS = st.sampled_from([0, 1, 30, 50, 99, 100])
EDITS = st.sampled_from(["none", "disable", "delete", "archive"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(PERCENTS, EDITS), min_size=1, max_size=4))
def test_whatever_the_real_routing_sends_to_a_queue_the_referee_sees_routed(layout: list[tuple[int, str]]) -> None:
    world = World(WF)
    for index, (percent, edit) in enumerate(layout):
        version = f"v{index + 1}"
        world.add_version(version, percent=percent)
        {"none": lambda v: None, "disable": world.hand_disable_general, "delete": world.hand_delete_general}.get(
            edit, world.hand_archive
        )(version)
    live = world.flags_newest_first(include_archived=False)
    routed = {
        chosen.info.task_queue
        for i in range(PROBES)
        for is_test in (False, True)
        if (chosen := choose(live, f"wf-{i}", is_test)) is not None
    }
    for index in range(len(layout)):
        queue = q(f"v{index + 1}")
        if queue in routed:
            assert routes_traffic(live, queue), (layout, queue)
        if not routes_traffic(live, queue):
            assert queue not in routed


# ----------------------------------------------------------------------------------------------- writes


def test_a_write_on_the_value_read_is_fine_and_one_over_a_human_edit_is_blind() -> None:
    world = world_of(("v1", 100), ("v2", 20))
    referee = Referee(WF)
    flag = world.flag_of("v2")
    assert flag is not None
    referee.saw("rollout.orders", [flag])
    referee.writing("rollout.orders", flag, 40)
    assert referee.violations == []
    world.hand_set_percent("v2", 70)  # after the write of 40 above, a human sets 70
    edited = world.flag_of("v2")
    assert edited is not None
    same = Referee(WF, seen=dict(referee.seen))
    same.writing("rollout.orders", edited, 70)  # the value it holds: nothing replaced
    assert same.violations == []
    referee.writing("rollout.orders", edited, 60)
    assert invariants(referee) == ["blind-write", "percent-down"]


def test_a_write_by_a_workflow_that_never_read_the_flag_is_blind() -> None:
    world = world_of(("v1", 100))
    flag = world.flag_of("v1")
    assert flag is not None
    referee = Referee(WF)
    referee.saw("rollout.orders", [flag])  # another workflow read it
    referee.writing("ci.orders", flag, 50)
    assert invariants(referee) == ["blind-write", "percent-down"]


def test_an_abort_may_route_back_to_0_whatever_the_flag_holds() -> None:
    world = world_of(("v1", 100), ("v2", 50))
    flag = world.flag_of("v2")
    assert flag is not None
    referee = Referee(WF)
    referee.abort_accepted(flag.info.flag_name)
    referee.writing("ci.orders", flag, 0)
    assert referee.violations == []


# ----------------------------------------------------------------------------------------------- retiring


def test_deleting_workers_of_a_queue_another_live_flag_carries_is_refused_in_either_order() -> None:
    world = world_of(("v1", 100), ("v2", 100), ("v3", 100))
    world.add_version("v1", percent=100)  # v1 deployed again: seq 3, shadowed by nothing
    world.hand_set_percent("v1", 0)  # ... and not routed yet; v3 at 100 % shadows v1 and v2
    delete_first = Referee(WF)
    reasons = delete_first.deleting("cleanup.orders-v1", flags(world), q("v1"), running=0, queued=(), version="v1")
    assert any("another unarchived flag carries it" in r for r in reasons)
    archive_first = Referee(WF)
    old = next(f for f in flags(world) if f.info.version_id == "v1" and f.info.seq_id == 0)
    archive_first.archiving("cleanup.orders-v1", flags(world), old)
    world.flags[old.info.flag_name] = old.model_copy(update={"archived": True})
    reasons = archive_first.deleting("cleanup.orders-v1", flags(world), q("v1"), running=0, queued=(), version="v1")
    assert any("another unarchived flag carries it" in r for r in reasons)


def test_deleting_the_workers_of_a_drained_unrouted_version_is_safe_and_each_reason_counts() -> None:
    world = world_of(("v1", 100), ("v2", 100))
    referee = Referee(WF)
    assert referee.deleting("migration.orders", flags(world), q("v1"), running=0, queued=(), version="v1") == []
    reasons = referee.deleting("migration.orders", flags(world), q("v1"), running=2, queued=("v1",), version="v1")
    assert reasons == ["2 workflows still run on it", "a queued deployment makes it live again"]
    assert referee.deleting("migration.orders", flags(world), q("v2"), running=0, queued=(), version="v2") == [
        "the flags route traffic to it",
        "it is the newest version's queue",
    ]
    assert set(invariants(referee)) == {"live-workers-deleted"}


def test_archiving_a_flag_that_routes_traffic_or_is_the_newest_is_recorded() -> None:
    world = world_of(("v1", 100), ("v2", 60))
    referee = Referee(WF)
    v1, v2 = world.flag_of("v1"), world.flag_of("v2")
    assert v1 is not None and v2 is not None
    referee.archiving("migration.orders", flags(world), v1)
    referee.archiving("migration.orders", flags(world), v2)
    assert [v.message for v in referee.violations] == [
        f"archived {v1.info.flag_name} while it routes traffic",
        f"archived {v2.info.flag_name}, the newest version's flag",
    ]
    world.hand_set_percent("v2", 100)
    shadowed = Referee(WF)
    shadowed.archiving("migration.orders", flags(world), v1)
    assert shadowed.violations == []


# ----------------------------------------------------------------------------------------------- between steps


def after(referee: Referee, **changes: object) -> None:
    observed: dict[str, object] = {
        "running_queues": {},
        "worker_queues": set(),
        "delivered": {},
        "current_started_at": None,
        "latest_started_at": None,
        "children": [],
        "now": T0 + timedelta(minutes=10),
    }
    referee.after_step(**(observed | changes))  # type: ignore[arg-type]


def test_runs_without_workers_and_second_signals_are_recorded_once() -> None:
    referee = Referee(WF)
    for _ in range(2):
        after(referee, running_queues={q("v1"): 3, q("v2"): 1}, worker_queues={q("v2")}, delivered={"r1": 2, "r2": 1})
    assert [str(v) for v in referee.violations] == [
        f"stranded: 3 workflows run on {q('v1')}, which has no workers",
        "signalled-twice: run r1 received 2 migrate signals",
    ]


def test_a_child_of_an_earlier_deployment_or_past_its_failed_sibling_is_recorded() -> None:
    started = T0 + timedelta(minutes=1)
    rollout = ChildView("rollout.orders", started_at=started)
    referee = Referee(WF)
    after(referee, current_started_at=T0, latest_started_at=T0, children=[rollout])
    assert referee.violations == []  # the deployment in progress owns it
    after(referee, current_started_at=T0 + timedelta(minutes=5), latest_started_at=T0, children=[rollout])
    assert invariants(referee) == ["child-outlived"]

    failed = ChildView("migration.orders", started_at=started, closed_at=T0 + timedelta(minutes=9), failed=True)
    soon, late = Referee(WF), Referee(WF)
    now = T0 + timedelta(minutes=9, seconds=3)
    after(soon, current_started_at=T0, latest_started_at=T0, children=[rollout, failed], now=now)
    assert soon.violations == []  # within the grace a workflow task needs to react
    after(late, current_started_at=T0, latest_started_at=T0, children=[rollout, failed])
    assert invariants(late) == ["child-outlived"]


def test_a_completed_run_with_a_failed_deployment_forgot_it() -> None:
    referee = Referee(WF)
    referee.chain_ended(failed_run=True, failed_deployments=["v2: FlagStoreError: down"])
    referee.chain_ended(failed_run=False, failed_deployments=[])
    assert referee.violations == []
    referee.chain_ended(failed_run=False, failed_deployments=["v2: FlagStoreError: down"])
    assert invariants(referee) == ["failure-forgotten"]


def test_every_invariant_has_a_sentence() -> None:
    assert all(INVARIANTS.values())
    referee = Referee(WF)
    try:
        referee.violate("no-such-invariant", "x")
    except KeyError as error:
        assert "no-such-invariant" in str(error)
    else:
        raise AssertionError("an unknown invariant was accepted")
