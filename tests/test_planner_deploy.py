"""Deploys arriving, and the deployment's kind."""

from __future__ import annotations

import pytest

from diachronic.ci.planner import deploy, deployment
from diachronic.ci.planner.deploy import DeployDecision
from diachronic.versions import version_info


@pytest.mark.parametrize(
    ("version", "current", "queued", "decision"),
    [
        ("v3", "v2", [], DeployDecision.ACCEPT),
        ("v2", "v2", [], DeployDecision.DUPLICATE_CURRENT),
        ("v3", "v2", ["v3"], DeployDecision.DUPLICATE_QUEUED),
        ("v1", "v2", ["v3"], DeployDecision.ACCEPT),
        ("v1", None, [], DeployDecision.ACCEPT),
    ],
    ids=["new version", "same as in progress", "same as queued", "older version is a redeploy", "idle"],
)
def test_classify_deploy(version: str, current: str | None, queued: list[str], decision: DeployDecision) -> None:
    assert deploy.classify_deploy(version, current=current, queued=queued) is decision


def test_plan_deployment() -> None:
    assert deployment.plan_deployment(None).kind is deployment.DeploymentKind.INITIAL
    previous = version_info("wf", 0, "a")
    assert deployment.plan_deployment(previous) == deployment.DeploymentPlan(
        deployment.DeploymentKind.ROLLOUT, previous
    )
