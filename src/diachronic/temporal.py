"""The one place that connects to Temporal."""

from __future__ import annotations

import asyncio

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from diachronic.errors import ConfigError
from diachronic.settings import Settings


async def connect(settings: Settings) -> Client:
    """A client for the configured Temporal, speaking pydantic models on the wire."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )


async def has_poller(client: Client, task_queue: str) -> bool:
    """Whether some worker polls ``task_queue`` for workflow tasks right now."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    response = await client.workflow_service.describe_task_queue(request)
    return len(response.pollers) > 0


async def wait_for_poller(client: Client, task_queue: str, *, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await has_poller(client, task_queue):
        if asyncio.get_running_loop().time() > deadline:
            raise ConfigError(f"no worker polls task queue {task_queue!r} after {timeout_s:.0f} s")
        await asyncio.sleep(0.1)
