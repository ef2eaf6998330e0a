"""Accept a deploy, or recognise it as a duplicate: decided when the deploy arrives, before it is queued.

Pure: the CI workflow passes what it knows (the deployment in progress, the queue) and acts on the verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

__all__ = ["DeployDecision", "classify_deploy"]


class DeployDecision(StrEnum):
    ACCEPT = "accept"
    DUPLICATE_CURRENT = "duplicate of the deployment in progress"
    DUPLICATE_QUEUED = "duplicate of a queued deployment"


def classify_deploy(version_id: str, *, current: str | None, queued: Sequence[str]) -> DeployDecision:
    """A deploy of the version being deployed, or of one already waiting in the queue, is not run twice."""
    if version_id == current:
        return DeployDecision.DUPLICATE_CURRENT
    if version_id in queued:
        return DeployDecision.DUPLICATE_QUEUED
    return DeployDecision.ACCEPT
