"""``POST /instruction`` over real HTTP (uvicorn on loopback) and the in-process ``Signaler``, on the dev server.

The routing oracle is Unleash's own engine (``UnleashClient``, offline, fed the flags as the store holds them), not
diachronic's evaluation: for every id, the queue the signaler chose must be the one Unleash's rule names, with and
without isTest, however isTest was given."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from tests.http_helpers import bearer, served, settings
from tests.signaler_workflows import COUNTER, Counter
from tests.unleash_engine import Engine, routed_queue

from diachronic.flags import VersionFlag
from diachronic.flags.local import LocalFlagStore
from diachronic.signaler import (
    AlreadyStarted,
    Signaler,
    SignalWithStartArgs,
    StartArgs,
    TaskQueueNotFound,
    start_routed,
)
from diachronic.versions import task_queue

pytestmark = pytest.mark.devserver


@pytest.fixture
async def flags(data_dir: Path) -> AsyncIterator[LocalFlagStore]:
    store = LocalFlagStore(data_dir / "flags.sqlite3")
    yield store
    await store.close()


@pytest.fixture
async def http(dev_env: WorkflowEnvironment, data_dir: Path, flags: LocalFlagStore) -> AsyncIterator[httpx.AsyncClient]:
    async with served(settings(data_dir, signaler_update_timeout_s=2.0), dev_env.client, flags) as client:
        client.headers.update(bearer())
        yield client


async def two_versions(flags: LocalFlagStore, wf: str, v2_percent: int) -> tuple[str, str]:
    """v1 at 100 %, v2 newer at ``v2_percent`` (plus its dark-deploy strategy): as the CI leaves them mid-rollout."""
    v1 = await flags.apply_version_flag(wf, "v1")
    await flags.set_general_percent(v1.flag_name, 100)
    v2 = await flags.apply_version_flag(wf, "v2")
    await flags.set_general_percent(v2.flag_name, v2_percent)
    return v1.task_queue, v2.task_queue


async def instruct(http: httpx.AsyncClient, action: str, args: Any) -> httpx.Response:
    return await http.post("/instruction", json={"action": action, "args": args})


async def register_is_test(client: Client) -> None:
    request = AddSearchAttributesRequest(
        namespace=client.namespace, search_attributes={"isTest": IndexedValueType.INDEXED_VALUE_TYPE_BOOL}
    )
    try:
        await client.operator_service.add_search_attributes(request)
    except RPCError as error:
        if error.status != RPCStatusCode.ALREADY_EXISTS:
            raise


async def test_routes_exactly_as_unleash_decides(
    dev_env: WorkflowEnvironment,
    http: httpx.AsyncClient,
    flags: LocalFlagStore,
    wf: str,
    offline_unleash: Callable[[list[VersionFlag]], Engine],
) -> None:
    v1, v2 = await two_versions(flags, wf, v2_percent=30)
    await register_is_test(dev_env.client)
    signaler = Signaler(dev_env.client, flags)
    held = await flags.list_version_flags(wf)
    engine = offline_unleash(held)

    async def over_http(workflow_id: str, is_test: bool) -> str:
        args = {"workflowId": workflow_id, "workflowType": wf, "taskQueue": "", "isTest": is_test}
        response = await instruct(http, "start", args)
        assert response.status_code == 200, response.text
        return str(response.json()["taskQueue"])

    async def over_http_search_attribute(workflow_id: str, is_test: bool) -> str:
        # isTest where the original read it, and no taskQueue at all
        args = {"workflowId": workflow_id, "workflowType": wf, "searchAttributes": {"isTest": [is_test]}}
        response = await instruct(http, "start", args)
        assert response.status_code == 200, response.text
        return str(response.json()["taskQueue"])

    async def in_process(workflow_id: str, is_test: bool) -> str:
        started = await signaler.start(StartArgs(workflow_id=workflow_id, workflow_type=wf, is_test=is_test))
        return started.task_queue

    chosen: dict[bool, set[str]] = {False: set(), True: set()}
    for via in (over_http, over_http_search_attribute, in_process):
        for i in range(25):
            for is_test in (False, True):
                workflow_id = f"{wf}-{via.__name__}-{i}-{is_test}"
                expected = routed_queue(engine, [f.info.flag_name for f in held], workflow_id, is_test=is_test)
                assert expected is not None
                assert await via(workflow_id, is_test) == expected, (via.__name__, workflow_id, is_test)
                chosen[is_test].add(expected)
    assert chosen[True] == {v2}, "test traffic always reaches the newest version"
    assert chosen[False] == {v1, v2}, "30 % of the other ids reach v2, the rest v1"


async def test_signal_with_start_answers_the_queue_unleash_chose(
    http: httpx.AsyncClient, flags: LocalFlagStore, wf: str, offline_unleash: Callable[[list[VersionFlag]], Engine]
) -> None:
    await two_versions(flags, wf, v2_percent=50)
    held = await flags.list_version_flags(wf)
    engine = offline_unleash(held)
    for i in range(30):
        for is_test in (False, True):
            workflow_id = f"{wf}-{i}-{is_test}"
            args = {"workflowId": workflow_id, "workflowType": wf, "taskQueue": "", "signal": "bump", "isTest": is_test}
            response = await instruct(http, "signalWithStart", args)
            assert response.status_code == 200, response.text
            expected = routed_queue(engine, [f.info.flag_name for f in held], workflow_id, is_test=is_test)
            assert response.json()["taskQueue"] == expected
            assert task_queue(wf, response.json()["versionId"]) == expected


async def test_a_flag_change_made_elsewhere_reaches_the_next_routing_decision(
    http: httpx.AsyncClient, flags: LocalFlagStore, wf: str, data_dir: Path
) -> None:
    """The embedded store re-reads its flags once any connection committed (SQLite's ``data_version``): the start
    right after another process's change is routed by it, whatever the clock says (Unleash: docs/unleash.md)."""
    v1, v2 = await two_versions(flags, wf, v2_percent=0)
    assert (await instruct(http, "start", {"workflowId": f"{wf}-a", "workflowType": wf})).json()["taskQueue"] == v1
    other_process = LocalFlagStore(data_dir / "flags.sqlite3")  # the CI, or a human, changes the flag elsewhere
    await other_process.set_general_percent((await flags.list_version_flags(wf))[0].info.flag_name, 100)
    await other_process.close()
    response = await instruct(http, "start", {"workflowId": f"{wf}-b", "workflowType": wf})
    assert response.json()["taskQueue"] == v2


async def test_statuses(dev_env: WorkflowEnvironment, http: httpx.AsyncClient, flags: LocalFlagStore, wf: str) -> None:
    # 400: the body does not validate; every bad field is named.
    response = await http.post("/instruction", content=b"{nope")
    assert response.status_code == 400 and response.json()["problems"][0]["field"] == "body"
    response = await instruct(http, "launch", {})
    assert response.status_code == 400 and response.json()["problems"][0]["field"] == "action"
    response = await instruct(http, "start", {"workflowType": wf, "taskQueue": 3, "memo": []})
    fields = {p["field"] for p in response.json()["problems"]}
    assert response.status_code == 400 and fields == {"args.workflowId", "args.taskQueue", "args.memo"}
    response = await instruct(http, "start", {"workflowId": "x", "workflowType": wf, "workflowRunTimeout": "soon"})
    assert response.status_code == 400 and response.json()["problems"][0]["field"] == "args.workflowRunTimeout"
    # 400 from Temporal itself (an unknown search attribute).
    response = await instruct(http, "start", {"workflowId": f"{wf}-sa", "workflowType": wf, "taskQueue": "q",
                                              "searchAttributes": {"NoSuchAttribute": ["x"]}})  # fmt: skip
    assert response.status_code == 400, response.text
    # 401 without the token.
    assert (await http.post("/instruction", json={}, headers={"Authorization": ""})).status_code == 401
    # 404: no such workflow; no enabled version to route to.
    response = await instruct(http, "signal", {"workflowId": f"{wf}-missing", "signal": "bump"})
    assert response.status_code == 404 and response.json()["error"] == "NotFound"
    response = await instruct(http, "start", {"workflowId": f"{wf}-1", "workflowType": wf})
    assert response.status_code == 404 and response.json()["error"] == "TaskQueueNotFound"
    # 409: already started.
    args = {"workflowId": f"{wf}-dup", "workflowType": wf, "taskQueue": f"{wf}-q"}
    assert (await instruct(http, "start", args)).status_code == 200
    response = await instruct(http, "start", args)
    assert response.status_code == 409 and response.json()["error"] == "WorkflowExecutionAlreadyStarted"
    # 413: too large.
    response = await instruct(http, "start", args | {"args": ["x" * 2_000_000]})
    assert response.status_code == 413
    # 503: Temporal unavailable (a client whose server is gone).
    dead = await Client.connect("127.0.0.1:1", lazy=True)
    async with served(settings(http_data_dir(flags)), dead, flags) as down:
        down.headers.update(bearer())
        response = await instruct(down, "start", args | {"workflowId": f"{wf}-down"})
        assert response.status_code == 503 and response.headers["retry-after"]
        health = await down.get("/healthz")
        assert health.status_code == 503 and health.json()["temporal"] == "unavailable"
    health = await http.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "temporal": "ok", "webhook": "enabled", "signalerAuth": "token"}


def http_data_dir(flags: LocalFlagStore) -> Path:
    return flags.path.parent


async def test_signal_batches_updates(dev_env: WorkflowEnvironment, http: httpx.AsyncClient, wf: str) -> None:
    queue = f"{wf}-counter"
    async with Worker(dev_env.client, task_queue=queue, workflows=[Counter]):
        ids = [f"{wf}-c{i}" for i in range(3)]
        for workflow_id in ids[:2]:
            started = await instruct(http, "start", {"workflowId": workflow_id, "workflowType": COUNTER,
                                                     "taskQueue": queue, "args": [10]})  # fmt: skip
            assert started.status_code == 200
        response = await instruct(http, "signal", {"workflowId": ids[0], "signal": "bump", "signalArgs": [2],
                                                   "correlationId": "c-1"})  # fmt: skip
        body = response.json()
        assert response.status_code == 200 and body["taskQueue"] == queue and body["correlationId"] == "c-1"
        batch = await instruct(http, "signalBatch", [{"workflowId": i, "signal": "bump"} for i in ids])
        assert batch.status_code == 200
        assert [s["workflowId"] for s in batch.json()["successes"]] == ids[:2]
        assert [(f["workflowId"], f["error"]) for f in batch.json()["failures"]] == [(ids[2], "NotFound")]
        # update: the workflow's reply; a validator's refusal is a 422; an unknown workflow a 404.
        reply = await instruct(http, "update", {"workflowId": ids[0], "signal": "add", "signalArgs": [5]})
        assert reply.status_code == 200 and reply.json() == 10 + 2 + 1 + 5
        refused = await instruct(http, "update", {"workflowId": ids[0], "signal": "add", "signalArgs": [-1]})
        assert refused.status_code == 422 and "only positive" in refused.json()["message"]
        missing = await instruct(http, "update", {"workflowId": ids[2], "signal": "add", "signalArgs": [1]})
        assert missing.status_code == 404
        # updateOrStart: starts the workflow when it does not run, then answers.
        args = {"workflowId": ids[2], "workflowType": COUNTER, "taskQueue": queue, "signal": "add", "signalArgs": [4],
                "args": [1]}  # fmt: skip
        reply = await instruct(http, "updateOrStart", args)
        assert reply.status_code == 200 and reply.json() == 5
        swsb = await instruct(http, "signalWithStartBatch", [
            {"workflowId": i, "workflowType": COUNTER, "taskQueue": queue, "signal": "bump"} for i in ids
        ])  # fmt: skip
        assert len(swsb.json()["successes"]) == 3 and swsb.json()["failures"] == []
        totals = [await dev_env.client.get_workflow_handle(i).query("total") for i in ids]
        assert totals == [10 + 2 + 1 + 5 + 1, 10 + 1 + 1, 1 + 4 + 1]
        for workflow_id in ids:
            await dev_env.client.get_workflow_handle(workflow_id).signal("finish")
            await dev_env.client.get_workflow_handle(workflow_id).result()


async def test_the_python_client_raises_the_same_errors(
    dev_env: WorkflowEnvironment, flags: LocalFlagStore, wf: str
) -> None:
    signaler = Signaler(dev_env.client, flags)
    with pytest.raises(TaskQueueNotFound):
        await signaler.start(StartArgs(workflow_id=f"{wf}-1", workflow_type=wf))
    v1, _ = await two_versions(flags, wf, v2_percent=0)
    started = await start_routed(dev_env.client, flags, workflow_name=wf, workflow_id=f"{wf}-1")
    assert started.task_queue == v1 and started.version_id == "v1"
    with pytest.raises(AlreadyStarted):
        await start_routed(dev_env.client, flags, workflow_name=wf, workflow_id=f"{wf}-1")
    result = await signaler.execute(
        {"action": "signalWithStart", "args": {"workflowId": f"{wf}-1", "workflowType": wf, "signal": "bump"}}
    )
    assert result.signaled_run_id == started.run_id  # type: ignore[union-attr]
    test_start = await signaler.signal_with_start(
        SignalWithStartArgs(workflow_id=f"{wf}-2", workflow_type=wf, signal="bump", is_test=True)
    )
    described = await dev_env.client.get_workflow_handle(f"{wf}-2").describe()
    assert (test_start.version_id, test_start.task_queue) == ("v2", f"{wf}-v2")  # isTest: the newest, dark version
    assert (described.run_id, described.task_queue) == (test_start.signaled_run_id, test_start.task_queue)
