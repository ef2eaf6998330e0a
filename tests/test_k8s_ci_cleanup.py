"""The CI's cleanup against the Kubernetes backend: the real cleanup workflow and activities on the Temporal dev
server (visibility counts what still runs), the embedded flag store, and an emulated API server over HTTP.

Safety (docs/architecture.md): the old version's Deployments are deleted only once nothing runs on its task queue and no
traffic is routed to it, and then only that version's, in every namespace. A refusal from Kubernetes (403) ends the
cleanup with a typed, non-retryable reason shown in its ``status``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from tests.ci_helpers import serving
from tests.conditions import eventually

from diachronic.ci.activities import CIActivities
from diachronic.ci.cleanup import CleanupWorkflow
from diachronic.ci.contracts import CleanupRun, DrainResult, RetireInput, cleanup_workflow_id
from diachronic.ci.planner.retire import RetireBlocker
from diachronic.ci.worker import ci_worker
from diachronic.contracts import VersionInfo
from diachronic.flags.local import LocalFlagStore
from diachronic.k8s.manifests import worker_deployment
from diachronic.workers import LABEL_VERSION, LABEL_WORKFLOW
from kmock_fixtures import DEPLOYMENTS, Cluster, running_cluster

pytestmark = [
    pytest.mark.devserver,
    pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning"),  # inside kmock
]


@dataclass
class Setup:
    client: Client
    task_queue: str
    cluster: Cluster
    flags: LocalFlagStore
    wf: str
    v1: VersionInfo
    v2: VersionInfo

    async def start_cleanup(self) -> WorkflowHandle[Any, DrainResult]:
        run = CleanupRun(input=RetireInput(workflow_name=self.wf, from_version=self.v1, poll_interval_s=0.2))
        return await self.client.start_workflow(
            CleanupWorkflow.run, run, id=cleanup_workflow_id(self.v1.task_queue), task_queue=self.task_queue
        )


@pytest.fixture
async def s(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Setup]:
    wf = "wf" + uuid.uuid4().hex[:8]
    flags = LocalFlagStore(tmp_path / "flags.sqlite3")
    v1 = await flags.apply_version_flag(wf, "v1")
    await flags.set_general_percent(v1.flag_name, 100)
    v2 = await flags.apply_version_flag(wf, "v2")  # 0 % of general traffic: v1 still gets most of it
    async with running_cluster(tmp_path) as cluster:
        deployments = cluster.open()
        task_queue = f"ci-{uuid.uuid4()}"
        try:
            async with (
                ci_worker(
                    dev_env.client,
                    task_queue,
                    CIActivities(flags, deployments, dev_env.client, environment="development"),
                ),
                serving(dev_env.client, wf, "v2"),  # the old version is retired only while the new one is served
            ):
                yield Setup(dev_env.client, task_queue, cluster, flags, wf, v1, v2)
        finally:
            await deployments.close()
            await flags.close()


async def state(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    result: dict[str, Any] = await handle.query("status")
    return result


def waiting_for(handle: WorkflowHandle[Any, Any], blocker: RetireBlocker) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        current = await state(handle)
        return bool(current["iterations"] >= 2 and current["waitingFor"] == blocker.value)

    return check


async def test_cleanup_waits_for_running_workflows_and_traffic_then_deletes_only_that_version(s: Setup) -> None:
    wf, cluster = s.wf, s.cluster
    old = [await cluster.apply(worker_deployment(wf, "v1", image="w:1", namespace=ns)) for ns in ("team-a", "team-b")]
    for manifest in [
        worker_deployment(wf, "v2", image="w:2", namespace="team-a"),
        worker_deployment("billing", "v1", image="b:1", namespace="team-a"),
        worker_deployment(f"{wf}-v1", "x", image="x:1", namespace="team-b"),
    ]:
        await cluster.apply(manifest)
    stripped = await cluster.apply(worker_deployment(wf, "v1", image="w:1", namespace="team-c"))
    key = (DEPLOYMENTS, "team-c", stripped["metadata"]["name"])
    cluster.api.objects[key].patch({"metadata": {"labels": {LABEL_WORKFLOW: wf, LABEL_VERSION: None}}})  # by hand
    before = cluster.live_names()

    # A workflow still runs on the old task queue (nobody polls it: it stays Running).
    running = await s.client.start_workflow("Sleeper", id=f"{wf}-old", task_queue=s.v1.task_queue)
    cleanup = await s.start_cleanup()
    await eventually(waiting_for(cleanup, RetireBlocker.RUNNING), what="cleanup waits for the running workflow")
    assert cluster.requests("list") == [] and cluster.requests("delete") == []

    await running.terminate("done")
    await eventually(waiting_for(cleanup, RetireBlocker.ROUTED), what="cleanup waits for the traffic to move")
    assert cluster.requests("list") == [] and cluster.requests("delete") == []

    await s.flags.set_general_percent(s.v2.flag_name, 100)  # now v2 takes all new starts
    result = await cleanup.result()

    names = [f"{d['metadata']['namespace']}/{d['metadata']['name']}" for d in old]
    assert result.deleted_workers == names
    assert result.archived_flag == s.v1.flag_name
    assert cluster.live_names() == before - {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in old}
    assert [f.info.version_id for f in await s.flags.list_version_flags(wf)] == ["v2"]


async def test_a_forbidden_cleanup_fails_with_a_typed_reason_in_its_status(s: Setup) -> None:
    await s.flags.set_general_percent(s.v2.flag_name, 100)  # nothing blocks the retirement
    await s.cluster.apply(worker_deployment(s.wf, "v1", image="w:1", namespace="team-a"))
    s.cluster.fail("list", 403, reason="Forbidden", message="deployments.apps is forbidden")
    cleanup = await s.start_cleanup()
    with pytest.raises(WorkflowFailureError) as failure:
        await cleanup.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "WorkersError" and cause.non_retryable
    last_error = (await state(cleanup))["failure"]
    assert last_error.startswith("WorkersError: Kubernetes forbids diachronic to list deployments.apps")
    assert "missing RBAC permission" in last_error
    assert len(s.cluster.requests("list")) == 1  # not retried: no retry can grant a permission
    assert [f.info.version_id for f in await s.flags.list_version_flags(s.wf)] == ["v2", "v1"]  # flag kept
