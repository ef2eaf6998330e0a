"""The retire rule (``planner.retire.plan_retire``): hold, or retire the flag and delete or keep the workers."""

from __future__ import annotations

import pytest
from tests.planner_factories import flag, retiring, version

from diachronic.ci.planner.retire import (
    LIVE_AGAIN,
    RetireBlocker,
    RetirePlan,
    RetireSnapshot,
    migration_done,
    plan_retire,
)
from diachronic.flags.evaluation import default_strategies


@pytest.mark.parametrize(
    ("snapshot", "plan"),
    [
        (retiring(), RetirePlan(archive_flag=True, delete_workers=True)),
        (retiring(running_on_old_queue=3), RetirePlan(RetireBlocker.RUNNING)),
        (
            retiring(flags=(flag(1, "v2", 60), flag(0, "v1")), running_on_old_queue=3),
            RetirePlan(RetireBlocker.RUNNING),
        ),
        (retiring(flags=(flag(1, "v2", 60), flag(0, "v1"))), RetirePlan(RetireBlocker.ROUTED)),
        (retiring(flags=(flag(1, "v2", enabled=False), flag(0, "v1"))), RetirePlan(RetireBlocker.ROUTED)),
        (retiring(flags=(flag(1, "v2", None), flag(0, "v1"))), RetirePlan(archive_flag=True, delete_workers=True)),
        (retiring(flags=(flag(0, "v1"),)), RetirePlan(RetireBlocker.NEWEST)),
        (retiring(flags=(flag(1, "v2", archived=True), flag(0, "v1"))), RetirePlan(RetireBlocker.NEWEST)),
        (
            retiring(flags=(flag(2, "v3"), flag(1, "v2", 0), flag(0, "v1"))),
            RetirePlan(archive_flag=True, delete_workers=True),
        ),
        (
            retiring(old=version(1, "v2"), flags=(flag(2, "v1"), flag(1, "v2"), flag(0, "v1", archived=True))),
            RetirePlan(archive_flag=True, delete_workers=True),
        ),
        (
            retiring(flags=(flag(2, "v1"), flag(1, "v2"), flag(0, "v1")), running_on_old_queue=4),
            RetirePlan(archive_flag=True, kept_workers=LIVE_AGAIN),
        ),
        (
            retiring(flags=(flag(2, "v1", 30), flag(1, "v2"), flag(0, "v1"))),
            RetirePlan(archive_flag=True, kept_workers=LIVE_AGAIN),
        ),
        (retiring(deploying=("v1",)), RetirePlan(RetireBlocker.DEPLOYING)),
        (retiring(deploying=("v3",)), RetirePlan(archive_flag=True, delete_workers=True)),
        (
            retiring(flags=(flag(1, "v2"), flag(0, "v1", archived=True))),
            RetirePlan(archive_flag=False, delete_workers=True),
        ),
        (
            retiring(flags=(flag(1, "v2"), flag(0, "v1", archived=True)), deploying=("v1",)),
            RetirePlan(RetireBlocker.DEPLOYING),
        ),
    ],
    ids=[
        "drained and routed away: retire",
        "workflows still run on the old queue: hold",
        "running and routed: running is said first",
        "the new version at 60 %: the old one still takes traffic, hold",
        "the new flag disabled: the old one takes the traffic, hold",
        "the new flag enabled without an active strategy: on for every id (Unleash's rule), retire",
        "never retire the newest version",
        "the new flag archived by hand: the old one is the newest again, hold",
        "a newer version at 100 % shields it, whatever lies between",
        "the version in the middle of a roll-back retires",
        "redeployed (another live flag carries its queue): archive the old flag, keep the workers, running or not",
        "redeployed and still rolling out: the old flag routes nothing, archive it, keep the workers",
        "a deployment of the old version waits in the CI's queue: hold",
        "another version queued does not matter",
        "its flag already archived (a migration handed over): only the workers go",
        "its flag archived but a deployment of it waits: hold",
    ],
)
def test_plan_retire(snapshot: RetireSnapshot, plan: RetirePlan) -> None:
    assert plan_retire(snapshot) == plan


def test_a_general_strategy_disabled_at_100_percent_shields_nothing() -> None:
    """Found by the explorer (catalog: explore-2-188): a person routes 100 % to v2, then disables v2's general
    strategy; its dark deploy strategy stays active, so general traffic goes back to v1, whose flag must stay."""
    v2 = flag(1, "v2")
    strategies = default_strategies(v2.info.flag_name, general_percent=100)
    strategies[1] = strategies[1].model_copy(update={"disabled": True})
    v2 = v2.model_copy(update={"strategies": strategies})
    assert plan_retire(retiring(flags=(v2, flag(0, "v1")))) == RetirePlan(RetireBlocker.ROUTED)


@pytest.mark.parametrize(
    ("snapshot", "done"),
    [
        (retiring(), True),
        (retiring(running_on_old_queue=3), False),
        (retiring(flags=(flag(1, "v2", 60), flag(0, "v1"))), False),
        (retiring(flags=(flag(0, "v1"),)), False),
        (retiring(deploying=("v1",)), True),
        (retiring(flags=(flag(2, "v1"), flag(1, "v2"), flag(0, "v1"))), True),
    ],
    ids=[
        "empty and unrouted: done",
        "workflows still run on the old queue: not done",
        "empty for now, but new starts still go there: not done (it fills again)",
        "the old version is the newest: new starts go there, not done",
        "empty and unrouted, a deployment of it waits: done (the retirement waits, not the migration)",
        "empty, the version live again: done (its old flag retires)",
    ],
)
def test_the_migration_is_done_when_the_old_queue_is_empty_for_good(snapshot: RetireSnapshot, done: bool) -> None:
    assert migration_done(snapshot, plan_retire(snapshot)) is done
