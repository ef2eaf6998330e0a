"""A deploy arriving: accepted, a duplicate, stale, or refused (``planner.deploy.classify_deploy``)."""

from __future__ import annotations

import pytest
from tests.planner_factories import at, event, queue

from diachronic.ci.planner.deploy import (
    MAX_DELIVERIES,
    DeployDecision,
    QueueSnapshot,
    Seen,
    classify_deploy,
    remember_delivery,
)
from diachronic.contracts import DeployEvent


@pytest.mark.parametrize(
    ("snapshot", "arriving", "decision"),
    [
        (queue(), event("v2"), DeployDecision.ACCEPT),
        (queue(current=Seen("v2", at(0))), event("v3", seconds=5), DeployDecision.ACCEPT),
        (queue(current=Seen("v2", at(0))), event("v2", seconds=5), DeployDecision.DUPLICATE_CURRENT),
        (queue(queued=(Seen("v3", at(0)),)), event("v3", seconds=9), DeployDecision.DUPLICATE_QUEUED),
        (queue(deployed=(Seen("v2", at(10)),)), event("v2", seconds=10), DeployDecision.STALE),
        (queue(deployed=(Seen("v2", at(10)),)), event("v2", seconds=3), DeployDecision.STALE),
        (queue(deployed=(Seen("v1", at(0)), Seen("v2", at(10)))), event("v1", seconds=20), DeployDecision.ACCEPT),
        (queue(deployed=(Seen("v2", at(10)),)), event("v3", seconds=3), DeployDecision.ACCEPT),
        (queue(), event("v2", workflow_name="other"), DeployDecision.OTHER_WORKFLOW),
        (queue(current=Seen("v2", at(0))), event("v2", workflow_name="other"), DeployDecision.OTHER_WORKFLOW),
        (queue(deliveries=("d-1",)), event("v2", delivery_id="d-1"), DeployDecision.DUPLICATE_DELIVERY),
        (
            queue(deliveries=("d-1",), current=Seen("v2", at(0))),
            event("v2", delivery_id="d-1"),
            DeployDecision.DUPLICATE_DELIVERY,
        ),
        (queue(deliveries=("d-1",)), event("v2", delivery_id="d-2"), DeployDecision.ACCEPT),
        (queue(deliveries=("d-1",)), event("v2"), DeployDecision.ACCEPT),
    ],
    ids=[
        "a new version is accepted",
        "another version than the one in progress queues behind it",
        "the version in progress again is a duplicate, whatever its event time",
        "a queued version again is a duplicate",
        "a redelivery of an event already deployed in this run is stale",
        "an older event of a version deployed in this run is stale, never a roll-back",
        "a new event of a version deployed earlier is a roll-back, accepted",
        "an older event of another version is accepted (its start checks the flags)",
        "another workflow's event is refused",
        "another workflow's event is refused before any duplicate check",
        "a GitHub delivery taken before is a duplicate (a redelivery, or the same delivery at another replica)",
        "a delivery taken before is named as such even while its version is in progress",
        "another delivery of the same version is judged on its own",
        "an event without a delivery id (the CLI) is judged on its own",
    ],
)
def test_classify_deploy(snapshot: QueueSnapshot, arriving: DeployEvent, decision: DeployDecision) -> None:
    assert classify_deploy(snapshot, arriving) is decision


def test_an_event_time_without_a_zone_is_read_as_utc() -> None:
    naive = event("v2", seconds=10).model_copy(update={"event_time": at(10).replace(tzinfo=None)})
    assert classify_deploy(queue(deployed=(Seen("v2", at(10)),)), naive) is DeployDecision.STALE


def test_only_another_workflow_is_a_refusal_duplicates_are_answers() -> None:
    assert [d for d in DeployDecision if d.refused] == [DeployDecision.OTHER_WORKFLOW]
    assert [d for d in DeployDecision if d.accepted] == [DeployDecision.ACCEPT]


def test_the_deliveries_kept_are_bounded_oldest_forgotten_first() -> None:
    kept: list[str] = []
    for i in range(MAX_DELIVERIES + 5):
        kept = remember_delivery(kept, event("v2", delivery_id=f"d-{i}"))
    assert len(kept) == MAX_DELIVERIES and kept[0] == "d-5" and kept[-1] == f"d-{MAX_DELIVERIES + 4}"
    assert remember_delivery(kept, event("v2", delivery_id="d-9")) == kept  # already kept: not twice
    assert remember_delivery(kept, event("v2")) == kept  # no delivery id (the CLI): nothing to keep
