"""Roll-back: when it is refused, its schedule, which redeploys are roll-backs, and when workflows move back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from diachronic.ci.contracts import Deployment, DeployRequest, MigrateBackEvidence, Phase
from diachronic.ci.planner.rollback import (
    AT_ONCE,
    MigrateBack,
    RedeployPlan,
    last_live,
    migrate_back_verdict,
    plan_redeploy,
    rollback_refusal,
    rollback_steps,
)
from diachronic.ci.planner.schedule import parse_steps
from diachronic.contracts import DeployEvent, RolloutStep
from diachronic.versions import version_info

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SEQ = {"v1": 0, "v2": 1, "v3": 2, "v4": 3}


def deployment(
    to: str, frm: str | None, phase: Phase, *, started_min_ago: float, finished_min_ago: float | None = None
) -> Deployment:
    """A deployment of ``to`` from ``frm`` that started and (if final) finished so many minutes ago."""
    started = NOW - timedelta(minutes=started_min_ago)
    event = DeployEvent(workflow_name="wf", version_id=to, sha=to, environment="development", event_time=started)
    return Deployment(
        request=DeployRequest(event=event),
        phase=phase,
        from_version=version_info("wf", SEQ[frm], frm) if frm else None,
        to_version=version_info("wf", SEQ[to], to),
        started_at=started,
        finished_at=None if finished_min_ago is None else NOW - timedelta(minutes=finished_min_ago),
    )


INITIAL_V1 = deployment("v1", None, Phase.COMPLETED, started_min_ago=600, finished_min_ago=599)
V2_DONE_LONG_AGO = deployment("v2", "v1", Phase.COMPLETED, started_min_ago=300, finished_min_ago=200)
V2_DONE_RECENTLY = deployment("v2", "v1", Phase.COMPLETED, started_min_ago=90, finished_min_ago=30)
V3_ROLLING = deployment("v3", "v2", Phase.ROLLING_OUT, started_min_ago=10)
V3_MIGRATING = deployment("v3", "v2", Phase.MIGRATING, started_min_ago=10)
V3_ABORTED = deployment("v3", "v2", Phase.ABORTED, started_min_ago=10, finished_min_ago=1)


@pytest.mark.parametrize(
    ("current", "history", "refusal"),
    [
        (V3_ROLLING, [INITIAL_V1], None),
        (V3_MIGRATING, [], None),
        (
            None,
            [INITIAL_V1, V2_DONE_RECENTLY],
            "rollback: nothing is being deployed: to go back to v1, deploy it again (a version live within the last "
            "hour goes back at once)",
        ),
        (None, [], "rollback: nothing is being deployed"),
        (
            deployment("v1", None, Phase.ROLLING_OUT, started_min_ago=1),
            [],
            "rollback: an initial deployment has no previous version",
        ),
        (
            deployment("v3", "v2", Phase.PREPARING, started_min_ago=1),
            [],
            "rollback: the deployment of v3 is preparing, not awaiting_continue or rolling_out or migrating",
        ),
    ],
    ids=[
        "rolling out: roll back",
        "migrating: roll back",
        "nothing in progress: say how to go back",
        "nothing ever deployed",
        "initial deployment: nowhere to go back to",
        "still preparing: nothing routed yet",
    ],
)
def test_rollback_refusal(current: Deployment | None, history: list[Deployment], refusal: str | None) -> None:
    assert rollback_refusal(current, history) == refusal


@pytest.mark.parametrize(
    ("steps", "percents"),
    [
        (None, [RolloutStep(percent=0, wait_s=0)]),
        (parse_steps("50@30s,100@30s"), [RolloutStep(percent=50, wait_s=30), RolloutStep(percent=0, wait_s=30)]),
        (
            parse_steps("25@1m,75@1m,100@2m"),
            [
                RolloutStep(percent=75, wait_s=60),
                RolloutStep(percent=25, wait_s=60),
                RolloutStep(percent=0, wait_s=120),
            ],
        ),
    ],
    ids=["at once", "two steps", "the previous version's share rises, the new version's falls to 0"],
)
def test_rollback_steps(steps: list[RolloutStep] | None, percents: list[RolloutStep]) -> None:
    assert rollback_steps(steps) == percents


@pytest.mark.parametrize(
    ("version", "deployments", "live"),
    [
        ("v1", [INITIAL_V1], NOW),
        ("v1", [INITIAL_V1, V2_DONE_LONG_AGO], NOW - timedelta(minutes=200)),
        ("v2", [INITIAL_V1, V2_DONE_LONG_AGO], NOW),
        ("v2", [INITIAL_V1, V2_DONE_LONG_AGO, V3_ROLLING], NOW),
        ("v3", [INITIAL_V1], None),
        (
            "v3",
            [INITIAL_V1, deployment("v3", "v1", Phase.ABORTED, started_min_ago=50, finished_min_ago=45)],
            NOW - timedelta(minutes=45),
        ),
        (
            "v1",
            [INITIAL_V1, deployment("v3", "v1", Phase.ABORTED, started_min_ago=50, finished_min_ago=45)],
            NOW,
        ),
    ],
    ids=[
        "the only version: live now",
        "moved away from: live until that deployment ended",
        "the newest completed: live now",
        "being moved away from: live now",
        "never deployed",
        "an aborted version was live until its abort",
        "the version an abort went back to: live now",
    ],
)
def test_last_live(version: str, deployments: list[Deployment], live: datetime | None) -> None:
    assert last_live(version, deployments, NOW) == live


@pytest.mark.parametrize(
    ("version", "history", "newest", "steps_given", "plan"),
    [
        ("v2", [INITIAL_V1, V2_DONE_RECENTLY, V3_ABORTED], "v3", False, RedeployPlan(True, AT_ONCE)),
        ("v2", [INITIAL_V1, V2_DONE_RECENTLY, V3_ABORTED], "v3", True, RedeployPlan(True, None)),
        ("v1", [INITIAL_V1, V2_DONE_RECENTLY], "v2", False, RedeployPlan(True, AT_ONCE)),
        ("v1", [INITIAL_V1, V2_DONE_LONG_AGO], "v2", False, RedeployPlan(False)),
        ("v4", [INITIAL_V1, V2_DONE_RECENTLY], "v2", False, RedeployPlan(False)),
        ("v2", [INITIAL_V1, V2_DONE_RECENTLY], "v2", False, RedeployPlan(False)),
    ],
    ids=[
        "the version an aborted deployment moved away from: at once",
        "with its own steps: on them",
        "retired 30 minutes ago: at once",
        "live over an hour ago: an ordinary deployment",
        "a new version: an ordinary deployment",
        "already the newest live version (deploy --redeploy): an ordinary deployment",
    ],
)
def test_plan_redeploy(
    version: str, history: list[Deployment], newest: str | None, steps_given: bool, plan: RedeployPlan
) -> None:
    assert plan_redeploy(version, history=history, newest_live=newest, now=NOW, steps_given=steps_given) == plan


@pytest.mark.parametrize(
    ("evidence", "verdict"),
    [
        (
            MigrateBackEvidence(old_accepts=["sub/2", "sub/3"], new_state_versions=["sub/3"], running_on_new_queue=4),
            MigrateBack(True, "v2 accepts sub/3: moving them back"),
        ),
        (
            MigrateBackEvidence(old_accepts=["sub/2"], new_state_versions=[], running_on_new_queue=4),
            MigrateBack(
                False,
                "the workflows on v3 did not say which state they carry (stuck, or not migratable): they stay there",
            ),
        ),
        (
            MigrateBackEvidence(old_accepts=["sub/2"], new_state_versions=["sub/3"], running_on_new_queue=4),
            MigrateBack(
                False, "v2 does not declare it accepts state sub/3 (it accepts sub/2): the workflows on v3 stay there"
            ),
        ),
        (
            MigrateBackEvidence(old_accepts=None, running_on_new_queue=4, detail="no workflow of v2 to ask"),
            MigrateBack(
                False,
                "v2 could not be asked which states it accepts (no workflow of v2 to ask): the workflows on v3 stay "
                "there",
            ),
        ),
        (
            MigrateBackEvidence(old_accepts=["sub/2"], running_on_new_queue=0),
            MigrateBack(False, "no workflow runs on v3: nothing to move back"),
        ),
        (
            MigrateBackEvidence(
                old_accepts=["sub/2", "sub/3"], new_state_versions=["sub/3", "sub/4"], running_on_new_queue=2
            ),
            MigrateBack(
                False,
                "v2 does not declare it accepts state sub/4 (it accepts sub/2, sub/3): the workflows on v3 stay there",
            ),
        ),
    ],
    ids=[
        "declared: move back",
        "the new code did not answer: stay",
        "not declared: stay",
        "the old code could not be asked: stay",
        "nothing on the new version",
        "one state not declared: all stay",
    ],
)
def test_migrate_back_verdict(evidence: MigrateBackEvidence, verdict: MigrateBack) -> None:
    assert migrate_back_verdict(evidence, old_version="v2", new_version="v3") == verdict
