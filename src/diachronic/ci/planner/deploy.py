"""A deploy arriving at the CI: accepted into the queue, recognised as a duplicate or a stale event, or refused.

Decided the moment it arrives (the deploy update's handler and validator, the original's deploy signal), over
what the CI workflow holds: the deployment in progress, the queue, and the deployments of this CI run. Whether the
version already is the newest live version needs the flags: that is decided when the deployment starts
(``planner.deployment.plan_start``).

    snapshot = QueueSnapshot(ci_workflow_name="orders", current=Seen("v2", t2), deployed=(Seen("v1", t1),))
    classify_deploy(snapshot, event)  # -> DeployDecision.ACCEPT, DUPLICATE_*, STALE or OTHER_WORKFLOW
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from diachronic.contracts import DeployEvent

__all__ = ["DeployDecision", "QueueSnapshot", "Seen", "classify_deploy"]


class DeployDecision(StrEnum):
    ACCEPT = "accept"
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


def classify_deploy(snapshot: QueueSnapshot, event: DeployEvent) -> DeployDecision:
    """Refuse another workflow's event; a deploy of the version in progress or queued is a duplicate; an event no
    newer than one this run already deployed the version from is stale (a redelivery, or an old event sent again),
    never a roll-back: a roll-back is a new event."""
    if event.workflow_name != snapshot.ci_workflow_name:
        return DeployDecision.OTHER_WORKFLOW
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


def _utc(moment: datetime) -> datetime:
    """An event time without a zone is read as UTC (as the original's ``new Date()`` wrote them)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
