"""``POST /webhooks/github`` over real HTTP (uvicorn on loopback), the real Temporal dev server and a CI worker."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from tests.ci_helpers import CIHarness, ci_harness, served_workflow
from tests.conditions import eventually
from tests.http_helpers import SECRET, TOKEN, bearer, deployment_status, now_iso, served, settings, signed

from diachronic.ci import client as ci
from diachronic.ci.contracts import Phase
from diachronic.contracts import ci_workflow_id
from diachronic.flags.evaluation import general_percent
from diachronic.flags.local import LocalFlagStore
from diachronic.webhook.github import SHORT_SHA_LENGTH

pytestmark = pytest.mark.devserver

SHA1 = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
SHA2 = "b2c3d4e5f60718293a4b5c6d7e8f901234567890"


@pytest.fixture
async def wf(dev_env: WorkflowEnvironment) -> AsyncIterator[str]:
    async with served_workflow(dev_env.client, SHA1[:SHORT_SHA_LENGTH], SHA2[:SHORT_SHA_LENGTH]) as name:
        yield name


@pytest.fixture
async def h(dev_env: WorkflowEnvironment, data_dir: Path) -> AsyncIterator[CIHarness]:
    # GitHub's deployments here are to "production": the CI serves that environment (DIACHRONIC_ENVIRONMENT).
    async with ci_harness(dev_env.client, data_dir, f"ci-{uuid.uuid4()}", environment="production") as harness:
        yield harness


async def post(http: httpx.AsyncClient, body: dict | bytes, **kw: str) -> httpx.Response:  # type: ignore[type-arg]
    raw, headers = signed(body, **kw)
    return await http.post("/webhooks/github", content=raw, headers=headers)


async def ci_exists(client: Client, wf: str) -> bool:
    try:
        await client.get_workflow_handle(ci_workflow_id(wf)).describe()
    except RPCError:
        return False
    return True


async def test_a_signed_success_starts_the_ci_and_the_deployment_completes(
    h: CIHarness, http: httpx.AsyncClient, wf: str
) -> None:
    response = await post(http, deployment_status(sha=SHA1, payload={"workflowName": wf}, created_at=now_iso()))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["action"] == "started" and body["workflowId"] == f"ci.{wf}"
    assert body["deployEvent"]["versionId"] == SHA1[:7] and body["deployEvent"]["sha"] == SHA1
    handle = h.client.get_workflow_handle(ci_workflow_id(wf))
    description = await handle.describe()
    assert description.workflow_type == "workflowCI" and description.task_queue == h.task_queue
    result = await handle.result()
    assert [d["phase"] for d in result["deployments"]] == ["completed"]
    # The GitHub deployment it came from travels with it: the CI reports its statuses there.
    github = {"repository": "acme/orders", "deploymentId": 1}
    assert [d["request"]["event"]["githubDeployment"] for d in result["deployments"]] == [github]
    [flag] = await h.flags.list_version_flags(wf)
    assert flag.info.flag_name == f"workflow.{wf}.seqId.000.version.{SHA1[:7]}" and general_percent(flag) == 100


async def test_a_wrong_signature_changes_nothing(h: CIHarness, http: httpx.AsyncClient, wf: str) -> None:
    body = deployment_status(sha=SHA1, payload={"workflowName": wf})
    for secret in ("not-the-secret", ""):
        response = await post(http, body, delivery="d-wrong", secret=secret)
        assert response.status_code == 401 and response.json()["error"] == "Unauthorized"
    raw, headers = signed(body, delivery="d-wrong")
    del headers["X-Hub-Signature-256"]
    assert (await http.post("/webhooks/github", content=raw, headers=headers)).status_code == 401
    assert not await ci_exists(h.client, wf)
    assert await h.flags.list_version_flags(wf) == []
    # Nothing was sent either: the same delivery id, correctly signed, still deploys.
    assert (await post(http, body, delivery="d-wrong")).status_code == 202


async def test_a_delivery_while_no_ci_worker_runs_is_taken_and_deploys_once_a_worker_starts(
    dev_env: WorkflowEnvironment, data_dir: Path, wf: str
) -> None:
    """GitHub does not redeliver by itself, so a 2xx must mean the deployment is recorded. Nobody polls the CI task
    queue (its worker is restarting): Temporal records the signal, and the CI worker that starts later deploys it."""
    queue = f"ci-{uuid.uuid4()}"
    flags = LocalFlagStore(data_dir / "flags.sqlite3")
    try:
        async with served(settings(data_dir, ci_task_queue=queue), dev_env.client, flags) as http:
            response = await post(http, deployment_status(sha=SHA1, payload={"workflowName": wf}), delivery="d-late")
    finally:
        await flags.close()
    assert response.status_code == 202 and response.json()["action"] == "started", response.text
    handle = dev_env.client.get_workflow_handle(ci_workflow_id(wf))
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    async with ci_harness(dev_env.client, data_dir, queue, environment="production") as h:
        result = await handle.result()
        [flag] = await h.flags.list_version_flags(wf)
    assert [(d["request"]["event"]["deliveryId"], d["phase"]) for d in result["deployments"]] == [
        ("d-late", "completed")
    ]
    assert flag.info.version_id == SHA1[:7] and general_percent(flag) == 100


@pytest.mark.parametrize("state", ["pending", "in_progress", "queued", "failure", "error"])
async def test_non_success_states_are_ignored(h: CIHarness, http: httpx.AsyncClient, wf: str, state: str) -> None:
    response = await post(http, deployment_status(state=state, sha=SHA1, payload={"workflowName": wf}))
    assert response.status_code == 200 and response.json()["action"] == "ignored"
    assert not await ci_exists(h.client, wf)


async def test_ping_other_events_and_bad_input(h: CIHarness, http: httpx.AsyncClient, wf: str) -> None:
    assert (await post(http, {"zen": "Design for failure.", "hook_id": 7}, event="ping")).json()["action"] == "pong"
    assert (await post(http, {"ref": "refs/heads/main"}, event="push")).json()["action"] == "ignored"
    missing = deployment_status(payload={"workflowName": wf})
    del missing["deployment"]["sha"]
    response = await post(http, missing)
    assert response.status_code == 400
    assert response.json()["problems"] == [{"field": "deployment.sha", "message": "Field required"}]
    response = await post(http, b'{"deployment_status": ')
    assert response.status_code == 400 and response.json()["problems"][0]["field"] == "body"
    response = await post(http, deployment_status(repository="acme/unmapped"))
    assert response.status_code == 400 and "deployment.payload.workflowName" in response.json()["message"]
    huge = deployment_status(payload={"workflowName": wf, "blob": "x" * 2_000_000})
    assert (await post(http, huge)).status_code == 413
    assert not await ci_exists(h.client, wf)


async def test_the_repository_mapping_names_the_workflow(h: CIHarness, data_dir: Path, wf: str) -> None:
    config = settings(data_dir, ci_task_queue=h.task_queue, github_repositories={f"acme/{wf}:production": wf})
    async with served(config, h.client, h.flags) as http:
        response = await post(http, deployment_status(repository=f"acme/{wf}", sha=SHA1))
    assert response.status_code == 202 and response.json()["deployEvent"]["workflowName"] == wf
    await h.client.get_workflow_handle(ci_workflow_id(wf)).result()


async def test_without_a_secret_the_webhook_refuses_outside_dev(h: CIHarness, data_dir: Path, wf: str) -> None:
    body = deployment_status(sha=SHA1, payload={"workflowName": wf})
    config = settings(data_dir, ci_task_queue=h.task_queue, github_webhook_secret=None)
    async with served(config, h.client, h.flags) as http:
        response = await post(http, body)
        assert response.status_code == 503 and response.json()["error"] == "WebhookDisabled"
        assert "DIACHRONIC_GITHUB_WEBHOOK_SECRET" in response.json()["message"]
        assert (await http.get("/healthz")).json()["webhook"] == "disabled"
    assert not await ci_exists(h.client, wf)
    async with served(config, h.client, h.flags, dev=True) as http:
        raw, headers = signed(body)
        del headers["X-Hub-Signature-256"]
        assert (await http.post("/webhooks/github", content=raw, headers=headers)).status_code == 202
    await h.client.get_workflow_handle(ci_workflow_id(wf)).result()


async def test_a_dark_deploy_receives_only_test_traffic_through_the_signaler(
    h: CIHarness, http: httpx.AsyncClient, wf: str
) -> None:
    """GitHub -> webhook -> CI (dark deploy) -> flags -> signaler: the whole path over HTTP."""
    assert (await post(http, deployment_status(sha=SHA1, payload={"workflowName": wf}))).status_code == 202
    await h.client.get_workflow_handle(ci_workflow_id(wf)).result()
    dark = deployment_status(sha=SHA2, payload={"workflowName": wf, "isDarkDeploy": True})
    assert (await post(http, dark)).status_code == 202

    async def awaiting() -> bool:
        return (await ci.status(h.client, wf)).phase is Phase.AWAITING_CONTINUE

    await eventually(awaiting, what="the dark deploy waiting for continue")
    v1, v2 = f"{wf}-{SHA1[:7]}", f"{wf}-{SHA2[:7]}"
    for i in range(20):
        for is_test, expected in ((False, v1), (True, v2)):
            args = {"workflowId": f"{wf}-user-{i}-{is_test}", "workflowType": wf, "taskQueue": "", "isTest": is_test}
            response = await http.post("/instruction", json={"action": "start", "args": args}, headers=bearer())
            assert response.status_code == 200, response.text
            assert response.json()["taskQueue"] == expected
    await ci.control(h.client, wf, "cancel")
    result = await h.client.get_workflow_handle(ci_workflow_id(wf)).result()
    assert result["deployments"][-1]["phase"] == "cancelled"


async def test_secrets_never_appear_in_responses_or_logs(
    h: CIHarness, http: httpx.AsyncClient, wf: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[httpx.Response] = []
    body = deployment_status(sha=SHA1, payload={"workflowName": wf})
    seen.append(await post(http, body))  # success
    seen.append(await post(http, body, secret="wrong"))  # 401
    seen.append(await post(http, body, secret=SECRET + "x"))  # 401, secret-like signature
    seen.append(await post(http, b"{bad", secret=SECRET))  # 400
    for headers in ({}, bearer("wrong"), bearer(TOKEN + "x"), {"Authorization": TOKEN}):
        seen.append(await http.post("/instruction", json={"action": "start", "args": {}}, headers=headers))
    seen.append(await http.post("/instruction", json={"action": "start", "args": {"token": TOKEN}}, headers=bearer()))
    seen.append(await http.get("/healthz"))
    seen.append(await http.get("/openapi.json"))
    assert [r.status_code for r in seen[:8]] == [202, 401, 401, 400, 401, 401, 401, 401]
    for response in seen:
        text = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
        assert SECRET not in text and TOKEN not in text
    # The 400 echoing an unknown field must not echo its value either.
    assert seen[8].status_code == 400
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert logged, "expected some log lines to check"
    assert SECRET not in logged and TOKEN not in logged
