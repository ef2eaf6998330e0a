"""One deployment: its start, its children, an abort's write, the run's end (``planner.deployment``)."""

from __future__ import annotations

import pytest
from tests.planner_factories import event, flag, seen, start, version

from diachronic.ci.contracts import Actor, Control, DeploymentEnd, Phase
from diachronic.ci.planner.deployment import (
    RUNNING,
    ChildrenAction,
    ChildrenPlan,
    ChildrenSnapshot,
    ChildState,
    ChildView,
    DeploymentKind,
    DeploymentSnapshot,
    DeploymentStart,
    Refusal,
    RouteBack,
    StartVerdict,
    plan_children,
    plan_route_back,
    plan_start,
    run_failure,
)
from diachronic.ci.planner.rollout import TrafficObservation

# --------------------------------------------------------------------------------------------------- start


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        (start(flags=()), DeploymentStart(StartVerdict.INITIAL)),
        (start(), DeploymentStart(StartVerdict.ROLLOUT, previous=version(0, "v1"))),
        (
            start(flags=(flag(2, "v3", 0), flag(1, "v2", 100, archived=True), flag(0, "v1"))),
            DeploymentStart(StartVerdict.ROLLOUT, previous=version(2, "v3")),
        ),
        (
            start(event=event("v1"), flags=(flag(1, "v2"), flag(0, "v1", archived=True))),
            DeploymentStart(StartVerdict.ROLLOUT, previous=version(1, "v2")),
        ),
        (
            start(event=event("v1")),
            DeploymentStart(
                StartVerdict.DUPLICATE,
                detail="v1 already is the newest live version (workflow.wf.seqId.000.version.v1): nothing to deploy "
                "(a roll-back is a deploy of another version; `deploy --redeploy` takes this one through a "
                "deployment again)",
            ),
        ),
        (
            start(event=event("v1"), flags=(flag(1, "v1", 40), flag(0, "v0", 100)), redeploy=True),
            DeploymentStart(StartVerdict.ROLLOUT, previous=version(0, "v0")),
        ),
        (
            start(event=event("v2", environment="production")),
            DeploymentStart(
                StartVerdict.REFUSE,
                refusal=Refusal.ENVIRONMENT,
                detail="the deploy event is for environment 'production', this CI serves 'development' "
                "(DIACHRONIC_ENVIRONMENT): nothing was changed",
            ),
        ),
        (
            start(twins=(version(4, "x").model_copy(update={"workflow_name": "wf-a", "task_queue": "wf-a-x"}),)),
            DeploymentStart(
                StartVerdict.REFUSE,
                refusal=Refusal.TASK_QUEUE_TAKEN,
                detail="task queue wf-a-x already belongs to workflow 'wf-a' version 'x'; two versions on one queue "
                "would run each other's workflows: choose another version id",
            ),
        ),
    ],
    ids=[
        "nothing deployed before: initial",
        "a live version before: a rollout from it",
        "the previous version is the newest other live one, whatever its percentage",
        "a roll-back by redeploy: a rollout from the version it replaces",
        "the newest live version again is a duplicate: nothing is re-run",
        "a human's explicit redeploy of the newest live version runs it again from the previous one",
        "another environment is refused before anything changes",
        "a task queue another workflow's version has is refused",
    ],
)
def test_plan_start(snapshot: DeploymentSnapshot, expected: DeploymentStart) -> None:
    assert plan_start(snapshot) == expected


def test_a_start_names_its_kind() -> None:
    assert plan_start(start(flags=())).kind is DeploymentKind.INITIAL
    assert plan_start(start()).kind is DeploymentKind.ROLLOUT
    assert plan_start(start(event=event("v1"))).kind is None


# --------------------------------------------------------------------------------------------------- children

DONE = ChildView(ChildState.COMPLETED)
EDITED = ChildView(ChildState.STOPPED, "RolloutPercentNotExpected", "a human changed it")
BROKEN = ChildView(ChildState.FAILED, "FlagStoreError", "refused")
HANDED = ChildView(ChildState.HANDED_OFF)
HUMAN_CANCEL = DeploymentEnd(detail="automation stopped, flags left as they are", by=Actor.HUMAN, note="oops")
HUMAN_ABORT = DeploymentEnd(detail="new starts routed back to the previous version, migration stopped", by=Actor.HUMAN)


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        (ChildrenSnapshot(RUNNING, RUNNING), ChildrenPlan(ChildrenAction.WAIT, Phase.ROLLING_OUT)),
        (ChildrenSnapshot(DONE, RUNNING), ChildrenPlan(ChildrenAction.WAIT, Phase.MIGRATING)),
        (ChildrenSnapshot(RUNNING, DONE), ChildrenPlan(ChildrenAction.WAIT, Phase.ROLLING_OUT)),
        (
            ChildrenSnapshot(DONE, DONE),
            ChildrenPlan(ChildrenAction.END, Phase.COMPLETED, end=DeploymentEnd()),
        ),
        (
            ChildrenSnapshot(DONE, None),
            ChildrenPlan(ChildrenAction.END, Phase.COMPLETED, start_cleanup=True, end=DeploymentEnd()),
        ),
        (
            ChildrenSnapshot(DONE, HANDED),
            ChildrenPlan(ChildrenAction.END, Phase.COMPLETED, start_cleanup=True, end=DeploymentEnd()),
        ),
        (ChildrenSnapshot(EDITED, RUNNING), ChildrenPlan(ChildrenAction.WAIT, Phase.MIGRATING)),
        (
            ChildrenSnapshot(EDITED, DONE),
            ChildrenPlan(
                ChildrenAction.END,
                Phase.STOPPED,
                end=DeploymentEnd(reason="RolloutPercentNotExpected", detail="a human changed it"),
            ),
        ),
        (
            ChildrenSnapshot(RUNNING, BROKEN),
            ChildrenPlan(
                ChildrenAction.END,
                Phase.FAILED,
                stop_children=True,
                end=DeploymentEnd(reason="FlagStoreError", detail="refused"),
            ),
        ),
        (
            ChildrenSnapshot(BROKEN, DONE),
            ChildrenPlan(
                ChildrenAction.END, Phase.FAILED, end=DeploymentEnd(reason="FlagStoreError", detail="refused")
            ),
        ),
        (
            ChildrenSnapshot(RUNNING, RUNNING, stop=Control.CANCEL, note="oops"),
            ChildrenPlan(ChildrenAction.END, Phase.CANCELLED, stop_children=True, end=HUMAN_CANCEL),
        ),
        (
            ChildrenSnapshot(None, None, stop=Control.CANCEL, note="oops"),
            ChildrenPlan(ChildrenAction.END, Phase.CANCELLED, end=HUMAN_CANCEL),
        ),
        (
            ChildrenSnapshot(DONE, RUNNING, stop=Control.ABORT),
            ChildrenPlan(ChildrenAction.END, Phase.ABORTED, stop_children=True, route_back=True, end=HUMAN_ABORT),
        ),
        (
            ChildrenSnapshot(RUNNING, BROKEN, stop=Control.ABORT),
            ChildrenPlan(ChildrenAction.END, Phase.ABORTED, stop_children=True, route_back=True, end=HUMAN_ABORT),
        ),
    ],
    ids=[
        "both running: the rollout goes on",
        "rollout done, migration running: migrating",
        "migration done first: wait for the rollout",
        "both done: completed",
        "non-migratory rollout done: completed, cleanup takes the previous version",
        "migration handed off: completed, cleanup takes the previous version",
        "rollout stopped by a human edit: migration follows the flag",
        "stopped by a human edit, migration done: the deployment ends stopped",
        "migration failed first: stop the rollout, fail at once",
        "rollout failed: fail",
        "a human's cancel stops both children",
        "a cancel before any child: cancelled, nothing to stop",
        "a human's abort stops the children and routes back",
        "a human's abort wins over a failure seen at the same time",
    ],
)
def test_plan_children(snapshot: ChildrenSnapshot, expected: ChildrenPlan) -> None:
    assert plan_children(snapshot) == expected


# --------------------------------------------------------------------------------------------------- abort


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        (seen(60), RouteBack(percent=0, expected=60)),
        (seen(0), None),
        (seen(None, strategy_found=False), None),
        (seen(60, strategy_disabled=True), None),
        (TrafficObservation(None, flag_found=False), None),
    ],
    ids=[
        "the new version takes 60 %: back to 0 on 60",
        "already 0: nothing to write",
        "a human deleted the strategy: they win",
        "a human disabled it: they win",
        "a human archived the flag: they win",
    ],
)
def test_plan_route_back(observed: TrafficObservation, expected: RouteBack | None) -> None:
    assert plan_route_back(observed) == expected


# --------------------------------------------------------------------------------------------------- the run


@pytest.mark.parametrize(
    ("failed", "reasons", "expected"),
    [
        (0, [], None),
        (1, ["v2: FlagStoreError: down"], "1 deployment(s) failed: v2: FlagStoreError: down"),
        (7, ["v6: X", "v7: Y"], "7 deployment(s) failed: v6: X; v7: Y (and 5 more)"),
    ],
    ids=["none failed: the run completes", "one failed: the run fails", "many: the count covers those not listed"],
)
def test_run_failure(failed: int, reasons: list[str], expected: str | None) -> None:
    assert run_failure(failed, reasons) == expected
