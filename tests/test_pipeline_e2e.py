"""The delivery pipeline end to end: a signed GitHub ``deployment_status`` webhook starts a deployment; the CI
reports it back on that GitHub deployment (through the proxy that validates every request with GitHub's OpenAPI
description) from ``in_progress`` to ``success``, or to ``failure`` for a failing one, and a notification arrives
at the JSON webhook for each change."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from tests.ci_helpers import CIHarness, ci_harness, event, fast, run_diachronic, served_workflow
from tests.conditions import eventually
from tests.github_api import GitHubApi
from tests.http_helpers import deployment_status, served, settings, signed
from tests.notify_receiver import Receiver, receiver

from diachronic.ci import client as ci
from diachronic.ci.contracts import CIStatus, Phase
from diachronic.ci.freeze import lift_freeze, set_freeze
from diachronic.ci.planner.schedule import parse_steps
from diachronic.contracts import DeployEvent, GitHubDeploymentRef, ci_workflow_id
from diachronic.errors import InvalidInput
from diachronic.github import GitHubDeployments, TokenAuth
from diachronic.notify import JsonWebhookSink
from diachronic.notify.activities import NotifyActivities
from diachronic.webhook.github import SHORT_SHA_LENGTH

pytestmark = pytest.mark.devserver

SHA1 = "1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
STATUSES = "/repos/acme/orders/deployments/1/statuses"


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with receiver() as box:
        yield box


@pytest.fixture
async def wf(dev_env: WorkflowEnvironment) -> AsyncIterator[str]:
    async with served_workflow(dev_env.client, "v1", "v2", SHA1[:SHORT_SHA_LENGTH], prefix="e2e") as name:
        yield name


@pytest.fixture
async def h(
    dev_env: WorkflowEnvironment, data_dir: Path, github: GitHubApi, hook: Receiver
) -> AsyncIterator[CIHarness]:
    notify = NotifyActivities(
        [JsonWebhookSink(SecretStr(f"{hook.url}/hook"))],
        GitHubDeployments(api_url=github.url, auth=TokenAuth(SecretStr("ghp_SENTINEL"))),
        "https://deploy.example.com",
    )
    try:
        async with ci_harness(
            dev_env.client, data_dir, f"ci-{uuid.uuid4()}", environment="production", notify=notify
        ) as harness:
            yield harness
    finally:
        await notify.close()


async def webhook(h: CIHarness, data_dir: Path, wf: str) -> None:
    async with served(settings(data_dir, ci_task_queue=h.task_queue), h.client, h.flags) as http:
        body, headers = signed(deployment_status(sha=SHA1, payload={"workflowName": wf}))
        response = await http.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code in (200, 202), response.text


async def states(github: GitHubApi, count: int) -> list[dict[str, Any]]:
    async def reported() -> list[dict[str, Any]] | None:
        bodies = [r.body for r in github.recorder.statuses()]
        return bodies if len(bodies) >= count else None

    return await eventually(reported, what=f"{count} GitHub deployment statuses")


async def test_a_deployment_from_github_goes_from_in_progress_to_success(
    h: CIHarness, data_dir: Path, github: GitHubApi, hook: Receiver, wf: str
) -> None:
    await webhook(h, data_dir, wf)
    await h.client.get_workflow_handle(ci_workflow_id(wf)).result()
    reported = await states(github, 2)
    assert [r["state"] for r in reported] == ["in_progress", "success"]
    assert {r.path for r in github.recorder.statuses()} == {STATUSES}
    assert reported[0]["description"] == "preparing: started"
    assert reported[1]["log_url"] == "https://deploy.example.com/#wf-" + wf
    kinds = [r.json["kind"] for r in hook.at("/hook")]
    assert kinds == ["started", "completed"]
    assert {r.json["github"]["deploymentId"] for r in hook.at("/hook")} == {1}


async def test_a_failing_deployment_from_github_ends_in_failure(
    h: CIHarness, data_dir: Path, github: GitHubApi, hook: Receiver, monkeypatch: pytest.MonkeyPatch, wf: str
) -> None:
    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise InvalidInput("this flag store refuses new versions")

    monkeypatch.setattr(h.flags, "apply_version_flag", refuse)
    await webhook(h, data_dir, wf)
    with pytest.raises(WorkflowFailureError):
        await h.client.get_workflow_handle(ci_workflow_id(wf)).result()
    reported = await states(github, 2)
    assert [r["state"] for r in reported] == ["in_progress", "failure"]
    assert "InvalidInput: this flag store refuses new versions" in reported[1]["description"]
    assert [r.json["kind"] for r in hook.at("/hook")] == ["started", "failed"]


def in_order(told: list[Any], first: list[Any], meanwhile: list[Any], last: list[Any]) -> bool:
    """``told`` begins with ``first`` and ends with ``last``; between them ``meanwhile`` in any order (two workflows
    publish concurrently: the rollout its steps, the migration what it saw)."""
    return (
        told[: len(first)] == first
        and told[len(told) - len(last) :] == last
        and sorted(map(str, told[len(first) : len(told) - len(last)])) == sorted(map(str, meanwhile))
    )


async def v2_after_v1(h: CIHarness, wf: str, **fields: object) -> DeployEvent:
    """v1 deployed (its CI run ended); v2, from GitHub deployment 1 of acme/orders, to deploy next."""
    await ci.deploy(h.client, h.task_queue, event(wf, "v1", environment="production"))
    await h.client.get_workflow_handle(ci_workflow_id(wf)).result()
    ref = GitHubDeploymentRef(repository="acme/orders", deployment_id=1)
    return event(wf, "v2", environment="production", **fields).model_copy(update={"github_deployment": ref})


async def test_each_rollout_step_and_the_migration_are_reported_before_success(
    h: CIHarness, github: GitHubApi, hook: Receiver, wf: str
) -> None:
    v2 = await v2_after_v1(h, wf)
    await ci.deploy(h.client, h.task_queue, v2, fast(steps=parse_steps("50@0.2s,100@0.2s")))
    await h.client.get_workflow_handle(ci_workflow_id(wf)).result()  # the CI publishes everything before it ends
    reported = [(r.body["state"], r.body["description"]) for r in github.recorder.statuses()]
    assert in_order(
        reported,
        [("in_progress", "preparing: started"), ("in_progress", "rolling_out: step reached, 50% of new starts on v2")],
        [
            ("in_progress", "rolling_out: step reached, 100% of new starts on v2"),
            ("in_progress", "migrating: old workflows moved"),
        ],
        [("success", "completed: completed, 100% of new starts on v2")],
    ), reported
    v2_kinds = [r.json["kind"] for r in hook.at("/hook") if r.json["versionId"] == "v2"]
    assert in_order(v2_kinds, ["started", "step_reached"], ["step_reached", "migration_done"], ["retired", "completed"])
    [retired] = [r.json for r in hook.at("/hook") if r.json["kind"] == "retired"]
    assert (retired["fromVersionId"], retired["github"]) == ("v1", {"repository": "acme/orders", "deploymentId": 1})


async def test_a_cleanup_tells_the_old_queue_drained_and_retired_after_the_end_but_not_github(
    h: CIHarness, github: GitHubApi, hook: Receiver, wf: str
) -> None:
    v2 = await v2_after_v1(h, wf, isNonMigratory=True)
    await ci.deploy(h.client, h.task_queue, v2, fast(steps=parse_steps("100@0.1s")))
    [record] = (await h.client.get_workflow_handle(ci_workflow_id(wf)).result())["deployments"]
    await h.client.get_workflow_handle(record["cleanupWorkflowId"]).result()  # it publishes everything first
    v2_told = [(r.json["kind"], r.json["phase"]) for r in hook.at("/hook") if r.json["versionId"] == "v2"]
    assert v2_told[-3:] == [("completed", "completed"), ("migration_done", "completed"), ("retired", "completed")]
    assert [r.body["state"] for r in github.recorder.statuses()][-1] == "success"  # the end stays GitHub's last


async def test_a_freeze_holds_a_deployment_in_the_queue_until_it_is_lifted_and_force_goes_through(
    h: CIHarness, data_dir: Path, wf: str
) -> None:
    until = datetime.now(UTC) + timedelta(hours=1)
    await set_freeze(h.client, h.task_queue, wf, until, "incident 42")
    await ci.deploy(h.client, h.task_queue, event(wf, "v1", environment="production"), fast())

    async def held() -> CIStatus | None:
        status = await ci.status(h.client, wf)
        return status if status.frozen is not None else None

    status = await eventually(held, what="the deployment held by the freeze")
    assert (status.frozen.reason, status.phase, [e.version_id for e in status.queued]) == (  # type: ignore[union-attr]
        "incident 42",
        Phase.IDLE,
        ["v1"],
    )
    code, _, err = await run_diachronic(h.client, h.task_queue, "status", wf, DIACHRONIC_DATA_DIR=str(data_dir))
    assert code == 0, err
    await lift_freeze(h.client, wf)
    await h.client.get_workflow_handle(ci_workflow_id(wf)).result()
    assert (await ci.status(h.client, wf)).phase is Phase.COMPLETED

    await set_freeze(h.client, h.task_queue, wf, until, "incident 43")
    forced = fast(steps=parse_steps("100@0.1s"), forceReason="hotfix for incident 43")
    await ci.deploy(h.client, h.task_queue, event(wf, "v2", environment="production"), forced)
    [*_, last] = (await h.client.get_workflow_handle(ci_workflow_id(wf)).result())["deployments"]
    assert last["overrodeFreeze"]["reason"] == "incident 43"
    assert last["request"]["options"]["forceReason"] == "hotfix for incident 43"
    await lift_freeze(h.client, wf)
