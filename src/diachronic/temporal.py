"""The one place that connects to Temporal."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

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


LIVE_POLLER_S = 120.0
"""A worker long-polls for at most a minute, then polls again: one not seen for two minutes is gone (Temporal keeps
listing a poller for minutes after it stopped)."""


async def live_pollers(client: Client, task_queue: str) -> int:
    """How many workers polled ``task_queue`` for workflow tasks within ``LIVE_POLLER_S`` (DescribeTaskQueue)."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    response = await client.workflow_service.describe_task_queue(request)
    recent = datetime.now(UTC) - timedelta(seconds=LIVE_POLLER_S)
    return sum(1 for poller in response.pollers if poller.last_access_time.ToDatetime(tzinfo=UTC) >= recent)


async def has_poller(client: Client, task_queue: str) -> bool:
    """Whether some worker polls ``task_queue`` for workflow tasks right now."""
    return await live_pollers(client, task_queue) > 0


async def wait_for_poller(client: Client, task_queue: str, *, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await has_poller(client, task_queue):
        if asyncio.get_running_loop().time() > deadline:
            raise ConfigError(f"no worker polls task queue {task_queue!r} after {timeout_s:.0f} s")
        await asyncio.sleep(0.1)


def visibility_string(value: str) -> str:
    """Quote a value for a visibility query (names are validated, but never trust a string in a query)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def visibility_time(moment: datetime) -> str:
    """A time in a visibility query (``CloseTime >= ...``): quoted RFC 3339 in UTC."""
    return visibility_string(moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
