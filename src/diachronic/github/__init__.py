"""GitHub's REST API: deployment statuses for deployments that came from a GitHub ``deployment_status`` event
(the receiving side is ``diachronic.webhook``). See docs/pipeline.md."""

from __future__ import annotations

from diachronic.github.client import AppAuth, GitHubAuth, GitHubDeployments, TokenAuth
from diachronic.github.statuses import DeploymentStatusBody, GitHubState, status_for

__all__ = [
    "AppAuth",
    "DeploymentStatusBody",
    "GitHubAuth",
    "GitHubDeployments",
    "GitHubState",
    "TokenAuth",
    "status_for",
]
