"""The signaler: start workflows on the task queue the flags choose (newest enabled version wins)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from diachronic.contracts import Contract, VersionInfo
from diachronic.errors import InvalidInput, NotFound
from diachronic.flags import FlagStore


class Started(Contract):
    workflow_id: str
    run_id: str
    task_queue: str
    version_id: str


async def route(flags: FlagStore, workflow_name: str, workflow_id: str, *, is_test: bool = False) -> VersionInfo:
    """The version a new workflow with this id starts on; NotFound when no version of it is enabled."""
    version = await flags.route(workflow_name, workflow_id, is_test=is_test)
    if version is None:
        raise NotFound(f"no enabled version of {workflow_name!r}: deploy one first")
    return version


async def start_routed(
    client: Client,
    flags: FlagStore,
    *,
    workflow_name: str,
    workflow_id: str,
    args: Sequence[Any] = (),
    is_test: bool = False,
) -> Started:
    """Start ``workflow_name`` (the workflow type) with ``workflow_id`` on the queue the flags choose."""
    if not workflow_id:
        raise InvalidInput("a workflow id is required: it decides the routing (stickiness)")
    version = await route(flags, workflow_name, workflow_id, is_test=is_test)
    try:
        handle = await client.start_workflow(
            workflow_name, args=list(args), id=workflow_id, task_queue=version.task_queue
        )
    except WorkflowAlreadyStartedError:
        raise InvalidInput(f"workflow {workflow_id!r} is already running") from None
    return Started(
        workflow_id=workflow_id,
        run_id=handle.result_run_id or "",
        task_queue=version.task_queue,
        version_id=version.version_id,
    )
