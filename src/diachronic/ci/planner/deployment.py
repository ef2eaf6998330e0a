"""One deployment: initial (no previous version) or a rollout from the previous version.

Pure: the CI workflow passes what it observed and executes the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from diachronic.contracts import VersionInfo

__all__ = ["DeploymentKind", "DeploymentPlan", "plan_deployment"]


class DeploymentKind(StrEnum):
    INITIAL = "initial"  # no previous version: route 100 % and finish
    ROLLOUT = "rollout"  # a previous version exists: roll out, then migrate or clean up


@dataclass(frozen=True)
class DeploymentPlan:
    kind: DeploymentKind
    from_version: VersionInfo | None


def plan_deployment(previous: VersionInfo | None) -> DeploymentPlan:
    """Initial when nothing was deployed before; otherwise a rollout from the previous version."""
    if previous is None:
        return DeploymentPlan(DeploymentKind.INITIAL, None)
    return DeploymentPlan(DeploymentKind.ROLLOUT, previous)
