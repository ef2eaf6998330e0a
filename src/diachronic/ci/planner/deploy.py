"""A deploy arriving at the CI: accepted into the queue, recognised as a duplicate or a stale event, or refused.

Decided the moment it arrives (the deploy update's handler and validator, the original's deploy signal), over
what the CI workflow holds: the deployment in progress, the queue, the deployments of this CI run and the GitHub
deliveries it took recently. Whether the version already is the newest live version needs the flags: that is
decided when the deployment starts (``planner.deployment.plan_start``), and catches a redelivery that arrives
after the CI run that took the delivery ended.

    snapshot = QueueSnapshot(ci_workflow_name="orders", current=Seen("v2", t2), deliveries=("72d3162e-…",))
    classify_deploy(snapshot, event)  # -> DeployDecision.ACCEPT, DUPLICATE_*, STALE or OTHER_WORKFLOW
    remember_delivery(deliveries, event)  # the bounded list the CI keeps, across continue-as-new
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from diachronic.contracts import DeployEvent

__all__ = ["MAX_DELIVERIES", "DeployDecision", "QueueSnapshot", "Seen", "classify_deploy", "remember_delivery"]

MAX_DELIVERIES = 100
"""GitHub deliveries a CI remembers: GitHub redelivers within hours, at a handful per deployment."""


class DeployDecision(StrEnum):
    ACCEPT = "accept"
    DUPLICATE_DELIVERY = "duplicate of a GitHub delivery this CI already took"
    DUPLICATE_CURRENT = "duplicate of the deployment in progress"
    DUPLICATE_QUEUED = "duplicate of a queued deployment"
    STALE = "stale: this CI run already deployed this version from an event as new or newer"
    OTHER_WORKFLOW = "refused: this CI deploys another workflow"

    @property
    def accepted(self) -> bool:
        return self is DeployDecision.ACCEPT

    @property
    def refused(self) -> bool:
        """A refusal is the caller's mistake (an error to the update's caller); a duplicate is not."""
        return self is DeployDecision.OTHER_WORKFLOW


@dataclass(frozen=True)
class Seen:
    """A deploy the CI holds: its version and the time of its event."""

    version_id: str
    event_time: datetime


@dataclass(frozen=True)
class QueueSnapshot:
    """What the CI workflow holds when a deploy arrives."""

    ci_workflow_name: str  # the workflow name in the CI's id (``ci.<workflowName>``)
    current: Seen | None = None
    queued: tuple[Seen, ...] = ()
    deployed: tuple[Seen, ...] = ()  # deployments this CI run finished (bounded), across continue-as-new
    deliveries: tuple[str, ...] = ()  # GitHub delivery ids this CI run took recently (bounded), oldest first


def classify_deploy(snapshot: QueueSnapshot, event: DeployEvent) -> DeployDecision:
    """Refuse another workflow's event; a GitHub delivery taken before, or a deploy of the version in progress or
    queued, is a duplicate; an event no newer than one this run already deployed the version from is stale (a
    redelivery, or an old event sent again), never a roll-back: a roll-back is a new event."""
    if event.workflow_name != snapshot.ci_workflow_name:
        return DeployDecision.OTHER_WORKFLOW
    if event.delivery_id is not None and event.delivery_id in snapshot.deliveries:
        return DeployDecision.DUPLICATE_DELIVERY
    if snapshot.current is not None and snapshot.current.version_id == event.version_id:
        return DeployDecision.DUPLICATE_CURRENT
    if any(seen.version_id == event.version_id for seen in snapshot.queued):
        return DeployDecision.DUPLICATE_QUEUED
    if any(
        seen.version_id == event.version_id and _utc(seen.event_time) >= _utc(event.event_time)
        for seen in snapshot.deployed
    ):
        return DeployDecision.STALE
    return DeployDecision.ACCEPT


def remember_delivery(deliveries: Sequence[str], event: DeployEvent) -> list[str]:
    """The deliveries to keep once ``event`` was taken: its delivery id added, the oldest beyond ``MAX_DELIVERIES``
    forgotten (bounded whatever the number of deployments)."""
    if event.delivery_id is None or event.delivery_id in deliveries:
        return list(deliveries)
    return [*deliveries, event.delivery_id][-MAX_DELIVERIES:]


def _utc(moment: datetime) -> datetime:
    """An event time without a zone is read as UTC (as the original's ``new Date()`` wrote them)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
