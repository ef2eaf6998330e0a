"""Helpers for CI tests: a CI worker on a fresh task queue with the embedded flag store and local workers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from examples.sleeper import Sleeper
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker
from tests.command_line import diachronic

from diachronic import versions
from diachronic.ci.activities import CIActivities
from diachronic.ci.contracts import DeployOptions
from diachronic.ci.worker import ci_worker
from diachronic.contracts import DeployEvent
from diachronic.flags.local import LocalFlagStore
from diachronic.workers.local import LocalWorkers


@dataclass
class CIHarness:
    client: Client
    task_queue: str
    flags: LocalFlagStore
    workers: LocalWorkers
    worker: Worker


@contextlib.asynccontextmanager
async def ci_harness(client: Client, data_dir: Path, task_queue: str) -> AsyncIterator[CIHarness]:
    flags = LocalFlagStore(data_dir / "flags.sqlite3")
    workers = LocalWorkers(data_dir / "workers", grace_s=2.0)
    activities = CIActivities(flags, workers, client)
    worker = ci_worker(client, task_queue, activities)
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


@contextlib.asynccontextmanager
async def serving(client: Client, workflow_name: str, *version_ids: str) -> AsyncIterator[None]:
    """Workers of the sleeper workflow (examples/sleeper.py) on these versions' task queues, in this process."""
    async with contextlib.AsyncExitStack() as stack:
        for version in version_ids:
            queue = versions.task_queue(workflow_name, version)
            await stack.enter_async_context(Worker(client, task_queue=queue, workflows=[Sleeper]))
        yield


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
        and e.workflow_execution_signaled_event_attributes.signal_name == "diachronic.v1.migrate"
    )


async def run_diachronic(client: Client, task_queue: str, *args: str, **env: str) -> tuple[int, str, str]:
    """``diachronic ARGS`` against ``client``'s Temporal and the CI task queue (``env``: more variables)."""
    variables = os.environ | {
        "DIACHRONIC_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "DIACHRONIC_CI_TASK_QUEUE": task_queue,
        **env,
    }
    ran = await diachronic(*args, env=variables)
    return ran.code, ran.out, ran.err
