"""What the CI tells the outside world as a deployment goes: one ``Notification`` per change of phase, step or
outcome, each with an id that stays the same across retries, so a receiver can de-duplicate (delivery is
at-least-once). Pure: no I/O, no clock (``at`` is given)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from diachronic.contracts import Contract, GitHubDeploymentRef, VersionId, WorkflowName

__all__ = ["DeploymentFacts", "Notification", "NotificationKind", "notification_id", "summary"]

# Namespace of the uuid5 ids: the same deployment and change always gets the same id, on any machine.
_ID_NAMESPACE = uuid.UUID("7d0c3a52-5f0e-4b8e-9a1e-2f61d1c0a9b4")


class NotificationKind(StrEnum):
    STARTED = "started"  # the CI took the deployment from its queue
    STEP_REACHED = "step_reached"  # the rollout routed a step's percentage of new starts to the new version
    PAUSED = "paused"  # a human paused the rollout
    RESUMED = "resumed"  # a human resumed it
    STOPPED = "stopped"  # a human stopped the deployment: cancel, abort, or an edit of the percentage
    ABORTED = "aborted"  # a gate or the health analysis aborted it: new starts went back to the previous version
    MIGRATION_DONE = "migration_done"  # nothing runs on the previous version's task queue any more
    RETIRED = "retired"  # the previous version's workers were deleted and its flag archived
    COMPLETED = "completed"  # the deployment ended well
    FAILED = "failed"  # the deployment failed: ``reason`` has the typed error


class DeploymentFacts(Contract):
    """What every notification of one deployment says, whatever changed (handed to the children that report)."""

    workflow_name: WorkflowName
    version_id: VersionId
    started_at: datetime = Field(description="with the version, tells this deployment from any other")
    from_version_id: VersionId | None = None
    github: GitHubDeploymentRef | None = None

    @property
    def key(self) -> str:
        return f"{self.version_id}@{self.started_at.isoformat()}"


class Notification(Contract):
    """One change of a deployment, as every sink receives it (JSON, camelCase)."""

    id: str = Field(description="the same for every delivery of this change: de-duplicate on it")
    kind: NotificationKind
    workflow_name: WorkflowName
    version_id: VersionId = Field(description="the version being deployed")
    from_version_id: VersionId | None = Field(default=None, description="the previous version, if any")
    phase: str = Field(description="the deployment's phase after the change (docs/ci.md)")
    percent: int | None = Field(default=None, ge=0, le=100, description="share of new starts on the new version")
    reason: str | None = Field(default=None, max_length=2000, description="why: typed error, human's reason, rule")
    at: datetime
    github: GitHubDeploymentRef | None = Field(default=None, description="the GitHub deployment it came from")


def notification_id(workflow_name: str, deployment: str, kind: NotificationKind, detail: str = "") -> str:
    """A stable id for one change: ``deployment`` tells deployments apart (e.g. the version and when it started),
    ``detail`` changes of the same kind (the step's percentage, the pause's count)."""
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join((workflow_name, deployment, kind.value, detail))))


_VERBS = {
    NotificationKind.STARTED: "deployment started",
    NotificationKind.STEP_REACHED: "rollout step reached",
    NotificationKind.PAUSED: "rollout paused",
    NotificationKind.RESUMED: "rollout resumed",
    NotificationKind.STOPPED: "stopped by a human",
    NotificationKind.ABORTED: "aborted",
    NotificationKind.MIGRATION_DONE: "migration done",
    NotificationKind.RETIRED: "old version retired",
    NotificationKind.COMPLETED: "deployment completed",
    NotificationKind.FAILED: "deployment failed",
}


def summary(notification: Notification) -> str:
    """One line a person reads: ``orders v1 -> v2: rollout step reached (30 % of new starts)``."""
    n = notification
    versions = f"{n.from_version_id} -> {n.version_id}" if n.from_version_id else n.version_id
    text = f"{n.workflow_name} {versions}: {_VERBS[n.kind]}"
    if n.percent is not None and n.kind is not NotificationKind.RETIRED:
        text += f" ({n.percent} % of new starts)"
    if n.reason:
        text += f": {n.reason}"
    return text
