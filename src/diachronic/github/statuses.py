"""Which GitHub deployment status a notification becomes. Pure: the adapter only sends what this returns.

GitHub shows the newest status of a deployment. While the CI works on it: ``in_progress`` with the phase and the
share of new starts in the description; at the end ``success``, ``failure`` (the deployment failed, or a gate
aborted it) or ``error`` (a human stopped it before it ended by itself), with the typed reason. What is told after
the deployment ended (a version retired, a cleanup's old queue drained) changes nothing on GitHub: its newest status
stays the end.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from diachronic.ci.contracts import FINAL_PHASES
from diachronic.notify.events import Notification, NotificationKind

__all__ = ["MAX_DESCRIPTION", "DeploymentStatusBody", "GitHubState", "dashboard_link", "status_for"]

MAX_DESCRIPTION = 140  # GitHub refuses longer descriptions

GitHubState = Literal["error", "failure", "inactive", "in_progress", "queued", "pending", "success"]

_STATES: dict[NotificationKind, GitHubState | None] = {
    NotificationKind.STARTED: "in_progress",
    NotificationKind.STEP_REACHED: "in_progress",
    NotificationKind.PAUSED: "in_progress",
    NotificationKind.RESUMED: "in_progress",
    NotificationKind.MIGRATION_DONE: "in_progress",
    NotificationKind.RETIRED: None,
    NotificationKind.COMPLETED: "success",
    NotificationKind.FAILED: "failure",
    NotificationKind.ABORTED: "failure",
    NotificationKind.STOPPED: "error",
}

_WORDS = {
    NotificationKind.STARTED: "started",
    NotificationKind.STEP_REACHED: "step reached",
    NotificationKind.PAUSED: "paused",
    NotificationKind.RESUMED: "resumed",
    NotificationKind.MIGRATION_DONE: "old workflows moved",
    NotificationKind.COMPLETED: "completed",
    NotificationKind.FAILED: "failed",
    NotificationKind.ABORTED: "aborted",
    NotificationKind.STOPPED: "stopped by a human",
}


class DeploymentStatusBody(BaseModel):
    """The body of ``POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses`` (GitHub's field names)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state: GitHubState
    description: str = Field(max_length=MAX_DESCRIPTION)
    log_url: str | None = None
    environment_url: str | None = None


def dashboard_link(dashboard_url: str | None, workflow_name: str) -> str | None:
    """The workflow's card on the dashboard (each card's element id is ``wf-<name>``)."""
    return f"{dashboard_url.rstrip('/')}/#wf-{workflow_name}" if dashboard_url else None


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


def status_for(notification: Notification, dashboard_url: str | None = None) -> DeploymentStatusBody | None:
    """The status to create for ``notification``, or None when GitHub need not hear of it."""
    state = _STATES[notification.kind]
    if state is None or (state == "in_progress" and notification.phase in FINAL_PHASES):
        return None
    n = notification
    text = f"{n.phase}: {_WORDS[n.kind]}"
    if n.percent is not None:
        text += f", {n.percent}% of new starts on {n.version_id}"
    if n.reason:
        text += f" ({n.reason})"
    link = dashboard_link(dashboard_url, n.workflow_name)
    return DeploymentStatusBody(state=state, description=_clip(text), log_url=link, environment_url=link)
