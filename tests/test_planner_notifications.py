"""Which notifications a change produces: table-driven, every kind, ids stable and distinct, the end told last."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from diachronic.ci.contracts import Phase
from diachronic.ci.planner.notifications import Progress, notifications
from diachronic.contracts import GitHubDeploymentRef
from diachronic.notify.events import DeploymentFacts
from diachronic.notify.events import NotificationKind as K

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
FACTS = DeploymentFacts(
    workflow_name="orders",
    version_id="v2",
    started_at=datetime(2026, 11, 29, 8, 0, tzinfo=UTC),
    from_version_id="v1",
    github=GitHubDeploymentRef(repository="acme/orders", deployment_id=7),
)
ROLLOUT = Progress(percent=0, paused=False)
DRAIN = Progress(drained=False, retired=False)


@pytest.mark.parametrize(
    ("before", "after", "kinds"),
    [
        (Progress(), Progress(phase=Phase.PREPARING), [K.STARTED]),
        (Progress(phase=Phase.PREPARING), Progress(phase=Phase.AWAITING_CONTINUE), []),
        (Progress(phase=Phase.PREPARING), Progress(phase=Phase.ROLLING_OUT), []),
        (Progress(phase=Phase.MIGRATING), Progress(phase=Phase.COMPLETED), [K.COMPLETED]),
        (Progress(phase=Phase.PREPARING), Progress(phase=Phase.COMPLETED), [K.COMPLETED]),
        (Progress(phase=Phase.ROLLING_OUT), Progress(phase=Phase.FAILED, reason="X: y"), [K.FAILED]),
        (Progress(phase=Phase.ROLLING_OUT), Progress(phase=Phase.CANCELLED), [K.STOPPED]),
        (Progress(phase=Phase.ROLLING_OUT), Progress(phase=Phase.ABORTED, stopped_by_human=True), [K.STOPPED]),
        (Progress(phase=Phase.ROLLING_OUT), Progress(phase=Phase.ABORTED, reason="gate"), [K.ABORTED]),
        (Progress(phase=Phase.COMPLETED), Progress(phase=Phase.COMPLETED), []),
        (Progress(phase=Phase.ROLLING_OUT), Progress(phase=Phase.STOPPED, reason="edited"), [K.STOPPED]),
        (Progress(phase=Phase.PREPARING), Progress(phase=Phase.DUPLICATE), [K.COMPLETED]),
        (ROLLOUT, Progress(percent=10, paused=False), [K.STEP_REACHED]),
        (Progress(percent=30, paused=False), Progress(percent=30, paused=True), [K.PAUSED]),
        (
            Progress(percent=30, paused=True),
            Progress(percent=30, paused=False),
            [K.RESUMED],
        ),
        (
            Progress(percent=30, paused=False),
            Progress(percent=20, paused=False),
            [],
        ),
        (
            Progress(percent=30, paused=False),
            Progress(percent=100, paused=False),
            [K.STEP_REACHED],
        ),
        (ROLLOUT, ROLLOUT, []),
        (DRAIN, Progress(drained=True, retired=False), [K.MIGRATION_DONE]),
        (DRAIN, Progress(drained=True, retired=True), [K.MIGRATION_DONE, K.RETIRED]),
        (Progress(drained=True, retired=False), Progress(drained=True, retired=True), [K.RETIRED]),
        (Progress(drained=True, retired=True), Progress(drained=True, retired=True), []),
        (
            Progress(phase=Phase.MIGRATING, drained=False),
            Progress(phase=Phase.COMPLETED, drained=True),
            [K.MIGRATION_DONE, K.COMPLETED],
        ),
    ],
    ids=[
        "taken from the queue: started",
        "dark deploy waits: nothing",
        "rollout starts: nothing (its steps tell)",
        "completed",
        "an initial deployment completes",
        "failed",
        "cancelled by a human: stopped",
        "aborted by a human: stopped",
        "aborted by a gate: aborted",
        "nothing changed",
        "a human edit ended it: stopped",
        "already live: completed",
        "a step reached",
        "paused",
        "resumed",
        "an edit by hand lowered it: no step (the CI tells the end: stopped)",
        "promoted: a step to 100",
        "rollout unchanged",
        "old queue drained",
        "drained and retired in one look",
        "retired",
        "drain unchanged",
        "the end is told last",
    ],
)
def test_each_change_produces_its_notifications(before: Progress, after: Progress, kinds: list[K]) -> None:
    assert [n.kind for n in notifications(FACTS, before, after, now=NOW)] == kinds


def test_a_notification_carries_the_deployment_and_the_change() -> None:
    [n] = notifications(FACTS, Progress(phase=Phase.ROLLING_OUT), Progress(phase=Phase.FAILED, reason="X: y"), now=NOW)
    assert (n.workflow_name, n.version_id, n.from_version_id, n.phase, n.reason, n.at, n.github) == (
        "orders",
        "v2",
        "v1",
        "failed",
        "X: y",
        NOW,
        FACTS.github,
    )


def test_ids_are_the_same_when_decided_again_and_differ_between_changes_and_deployments() -> None:
    step = (Progress(percent=0, paused=False), Progress(percent=30, paused=False))
    first = notifications(FACTS, *step, now=NOW)
    assert notifications(FACTS, *step, now=NOW.replace(minute=5)) == [
        n.model_copy(update={"at": NOW.replace(minute=5)}) for n in first
    ]
    later = FACTS.model_copy(update={"started_at": NOW})
    ids = {
        first[0].id,
        notifications(FACTS, Progress(percent=30, paused=False), Progress(percent=40, paused=False), now=NOW)[0].id,
        notifications(later, *step, now=NOW)[0].id,
        notifications(FACTS, Progress(paused=False, pauses=0), Progress(paused=True, pauses=1), now=NOW)[0].id,
        notifications(FACTS, Progress(paused=False, pauses=1), Progress(paused=True, pauses=2), now=NOW)[0].id,
    }
    assert len(ids) == 5


def test_a_step_says_the_share_of_new_starts() -> None:
    [n] = notifications(FACTS, Progress(percent=10, paused=False), Progress(percent=30, paused=False), now=NOW)
    assert (n.kind, n.percent, n.phase) == (K.STEP_REACHED, 30, "rolling_out")
