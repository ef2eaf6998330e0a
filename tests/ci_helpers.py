"""Helpers for CI tests: a CI worker on a fresh task queue with the embedded flag store and local workers, and workers
for the versions a test deploys (waits on conditions: ``tests.conditions``)."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from examples.sleeper import Sleeper
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker
from tests.command_line import diachronic

from diachronic.ci import client as ci
from diachronic.ci.activities import CIActivities
from diachronic.ci.contracts import (
    DeployOptions,
    HealthObservation,
    ObserveHealthInput,
    ObserveWorkersInput,
    VersionHealth,
    WorkersObservation,
)
from diachronic.ci.worker import ci_worker
from diachronic.contracts import MIGRATE_SIGNAL, DeployEvent, ci_workflow_id
from diachronic.flags.local import LocalFlagStore
from diachronic.notify.activities import NotifyActivities
from diachronic.temporal import wait_for_poller
from diachronic.versions import task_queue
from diachronic.workers.local import LocalWorkers


@dataclass
class CIHarness:
    client: Client
    task_queue: str
    flags: LocalFlagStore
    workers: LocalWorkers
    worker: Worker


class TimeSkippingActivities(CIActivities):
    """The CI's activities for the time-skipping test server, which has neither DescribeTaskQueue nor visibility:
    the gates' reads answer "a worker polls, nothing failed" under their real names (as samples-python fakes an
    activity). Readiness, gates and health are tested on the dev server (tests/test_gates_*.py)."""

    @activity.defn(name="observe_workers")
    async def observe_workers(self, input: ObserveWorkersInput) -> WorkersObservation:
        return WorkersObservation(task_queue=input.task_queue, pollers=1)

    @activity.defn(name="observe_health")
    async def observe_health(self, input: ObserveHealthInput) -> HealthObservation:
        return HealthObservation(
            new=VersionHealth(task_queue=input.new_task_queue), old=VersionHealth(task_queue=input.old_task_queue)
        )


@contextlib.asynccontextmanager
async def ci_harness(
    client: Client,
    data_dir: Path,
    task_queue: str,
    *,
    environment: str = "development",
    activities_class: type[CIActivities] = CIActivities,
    notify: NotifyActivities | None = None,
) -> AsyncIterator[CIHarness]:
    """A CI worker serving ``environment`` (deploy events for another one are refused); on the time-skipping
    server, with ``activities_class=TimeSkippingActivities``; ``notify``: where its notifications and GitHub
    statuses go (default: nowhere)."""
    flags = LocalFlagStore(data_dir / "flags.sqlite3")
    workers = LocalWorkers(data_dir / "workers", grace_s=2.0)
    activities = activities_class(flags, workers, client, environment=environment)
    worker = ci_worker(client, task_queue, activities, notify)
    async with worker:
        try:
            yield CIHarness(client, task_queue, flags, workers, worker)
        finally:
            await end_running_workflows(client, task_queue)
            await workers.stop_all()
            await flags.close()


async def end_running_workflows(client: Client, task_queue: str) -> None:
    """Terminate what still runs on the queue: a CI left waiting on the shared dev server, its worker gone, would
    slow every later test that lists the CIs (the dashboard queries each). The time-skipping server has no
    visibility to list them with, and nothing outlives its session there that a test lists."""
    try:
        running = [e async for e in client.list_workflows(f'TaskQueue="{task_queue}" AND ExecutionStatus="Running"')]
    except RPCError as error:
        if error.status is RPCStatusCode.UNIMPLEMENTED:
            return
        raise
    for execution in running:
        with contextlib.suppress(RPCError):  # it ended meanwhile
            await client.get_workflow_handle(execution.id, run_id=execution.run_id).terminate("the test is over")


def event(workflow: str, version: str, **kw: object) -> DeployEvent:
    return DeployEvent.model_validate(
        {
            "workflowName": workflow,
            "versionId": version,
            "sha": version * 4,
            "environment": "development",
            "eventTime": datetime.now(UTC).isoformat(),
            **kw,
        }
    )


def fast(**kw: object) -> DeployOptions:
    return DeployOptions.model_validate({"pollIntervalS": 0.2, **kw})


async def migrate_signals_received(client: Client, workflow_id: str, run_id: str) -> int:
    """The objective count: migrate signals in the run's own Temporal history (not our bookkeeping)."""
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return sum(
        1
        for e in history.events
        if e.HasField("workflow_execution_signaled_event_attributes")
        and e.workflow_execution_signaled_event_attributes.signal_name == MIGRATE_SIGNAL
    )


@contextlib.asynccontextmanager
async def serving(client: Client, wf: str, *versions: str) -> AsyncIterator[None]:
    """In-process workers (the ``Sleeper``) on the task queues of ``versions``."""
    async with contextlib.AsyncExitStack() as stack:
        for version in versions:
            await stack.enter_async_context(Worker(client, task_queue=task_queue(wf, version), workflows=[Sleeper]))
        yield


@contextlib.asynccontextmanager
async def served_workflow(client: Client, *versions: str, prefix: str = "wf") -> AsyncIterator[str]:
    """A workflow name of one test alone, with in-process workers on the queues of ``versions`` (the CI routes no
    traffic to a version before a worker polls its queue)."""
    name = prefix + uuid.uuid4().hex[:8]
    async with serving(client, name, *versions):
        yield name


async def start_worker_process(h: CIHarness, wf: str, version: str) -> None:
    """A real worker process for the version, started through the local worker backend (its workers to delete)."""
    address = h.client.service_client.config.target_host
    await h.workers.start(
        wf, version, [sys.executable, "-m", "examples.sleeper"], env={"DIACHRONIC_TEMPORAL_ADDRESS": address}
    )
    await wait_for_poller(h.client, task_queue(wf, version))


async def start_old(h: CIHarness, wf: str, count: int, version: str = "v1") -> dict[str, str]:
    """Start ``count`` workflows on ``version``; returns workflow id -> first run id."""
    runs = {}
    for i in range(count):
        handle = await h.client.start_workflow(wf, {"i": i}, id=f"{wf}-{i}", task_queue=task_queue(wf, version))
        runs[handle.id] = handle.result_run_id or ""
    return runs


async def finish_ci(h: CIHarness, wf: str) -> dict[str, Any]:
    """The CI run's result (its deployments), once it completed; raises if it failed."""
    result: dict[str, Any] = await h.client.get_workflow_handle(ci_workflow_id(wf)).result()
    return result


async def ci_end(h: CIHarness, wf: str) -> tuple[list[dict[str, Any]], str | None]:
    """The deployments of the CI run once it ended, and its failure (``Type: message``) or None."""
    try:
        return (await finish_ci(h, wf))["deployments"], None
    except WorkflowFailureError as failure:
        cause = failure.cause
        assert isinstance(cause, ApplicationError), cause
        [result] = cause.details
        return result["deployments"], f"{cause.type}: {cause.message}"


async def deploy_initial(h: CIHarness, wf: str, version: str = "v1") -> None:
    """The first deployment of ``wf``, with an in-process worker of ``version`` polling while it is deployed."""
    async with serving(h.client, wf, version):
        await deploy_served(h, wf, version)


async def deploy_served(h: CIHarness, wf: str, version: str = "v1") -> None:
    """A deployment of ``version`` whose queue a worker of the test's already polls, run until the CI's run ends."""
    await ci.deploy(h.client, h.task_queue, event(wf, version))
    await finish_ci(h, wf)


async def run_diachronic(client: Client, task_queue: str, *args: str, **env: str) -> tuple[int, str, str]:
    """``diachronic ARGS`` against ``client``'s Temporal and the CI task queue (``env``: more variables)."""
    variables = os.environ | {
        "DIACHRONIC_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "DIACHRONIC_CI_TASK_QUEUE": task_queue,
        **env,
    }
    ran = await diachronic(*args, env=variables)
    return ran.code, ran.out, ran.err
