"""Client-side helpers: send the migrate signal, see where a workflow runs now, read its snapshot."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from temporalio.client import Client, WorkflowExecutionStatus

from diachronic.migrate._protocol import MIGRATE_SIGNAL, SNAPSHOT_QUERY, Snapshot

__all__ = ["WorkflowLocation", "locate", "signal_migrate", "snapshot", "wait_for_task_queue"]


@dataclass(frozen=True)
class WorkflowLocation:
    """Where the latest run of a workflow id is: its run id, task queue (the code version) and status."""

    workflow_id: str
    run_id: str
    task_queue: str
    workflow_type: str
    status: WorkflowExecutionStatus | None


async def signal_migrate(client: Client, workflow_id: str, task_queue: str, *, run_id: str | None = None) -> None:
    """Ask a workflow to continue-as-new on ``task_queue``; the payload is the original's ``{taskQueue}``."""
    if not task_queue or not task_queue.strip():
        raise ValueError("task_queue must be a non-empty string")
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    await handle.signal(MIGRATE_SIGNAL, {"taskQueue": task_queue})


async def locate(client: Client, workflow_id: str) -> WorkflowLocation:
    """Describe the latest run: after a migration its run id changed and its task queue is the new one."""
    desc = await client.get_workflow_handle(workflow_id).describe()
    return WorkflowLocation(
        workflow_id=desc.id,
        run_id=desc.run_id,
        task_queue=desc.task_queue,
        workflow_type=desc.workflow_type,
        status=desc.status,
    )


async def snapshot(client: Client, workflow_id: str, *, run_id: str | None = None) -> Snapshot:
    """The ``diachronic.v1.snapshot`` query of a migratable workflow (state JSON, timers, pending target)."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    result: Snapshot = await handle.query(SNAPSHOT_QUERY, result_type=Snapshot)
    return result


async def wait_for_task_queue(
    client: Client,
    workflow_id: str,
    task_queue: str,
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
) -> WorkflowLocation:
    """Poll ``describe`` until the latest run is on ``task_queue`` and running; ``TimeoutError`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        where = await locate(client, workflow_id)
        if where.task_queue == task_queue and where.status == WorkflowExecutionStatus.RUNNING:
            return where
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"workflow {workflow_id} still on {where.task_queue} ({where.status}) after {timeout}s, "
                f"expected {task_queue}"
            )
        await asyncio.sleep(interval)
