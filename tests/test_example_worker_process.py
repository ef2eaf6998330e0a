"""The v1 and v2 worker entry points as separate OS processes (as the demo and local deployments run them)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from examples.subscription import WORKFLOW_NAME, task_queue
from examples.subscription.shared import SubscriptionResult, SubscriptionStart
from examples.subscription.worker import READY_LINE
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from diachronic.migrate import signal_migrate, wait_for_task_queue

REPO = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def worker_process(
    version: str, queue: str, address: str, *, stop_with: signal.Signals = signal.SIGTERM
) -> AsyncIterator[list[str]]:
    """Run ``python -m examples.subscription.worker_<version>``; yields its output lines; stops it with a signal."""
    env = {
        **os.environ,
        "DIACHRONIC_TASK_QUEUE": queue,
        "DIACHRONIC_TEMPORAL_ADDRESS": address,
        "DIACHRONIC_TEMPORAL_NAMESPACE": "default",
        "PYTHONUNBUFFERED": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"examples.subscription.worker_{version}",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []
    ready = asyncio.Event()

    async def pump() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode().rstrip()
            lines.append(line)
            if READY_LINE in line:
                ready.set()

    reader = asyncio.create_task(pump())
    try:
        waiters = [asyncio.create_task(ready.wait()), asyncio.create_task(proc.wait())]
        await asyncio.wait(waiters, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        assert ready.is_set(), f"worker {version} not ready: {lines}"
        assert f"{READY_LINE} {queue}" in "\n".join(lines)
        yield lines
        proc.send_signal(stop_with)
        assert await asyncio.wait_for(proc.wait(), 15) == 0, lines
        await reader
        assert any(line.startswith("worker stopped") for line in lines), lines
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        reader.cancel()


async def status(client: Client, workflow_id: str) -> dict[str, Any]:
    result: dict[str, Any] = await client.get_workflow_handle(workflow_id).query("status")
    return result


async def test_worker_processes_serve_and_migrate(dev_env: WorkflowEnvironment) -> None:
    client = dev_env.client
    address = client.service_client.config.target_host
    prefix = f"proc-{uuid.uuid4().hex[:8]}-"
    q1, q2 = task_queue("v1", prefix), task_queue("v2", prefix)
    async with worker_process("v1", q1, address), worker_process("v2", q2, address, stop_with=signal.SIGINT):
        handle = await client.start_workflow(
            WORKFLOW_NAME,
            SubscriptionStart(customer_id="c1", plan="basic", price_cents=900),
            id=f"{prefix}c1",
            task_queue=q1,
            result_type=SubscriptionResult,
        )
        assert (await status(client, handle.id))["version"] == "v1"
        await signal_migrate(client, handle.id, q2)
        await wait_for_task_queue(client, handle.id, q2, timeout=20)
        assert (await status(client, handle.id))["version"] == "v2"
        await handle.signal("cancel")
        assert (await handle.result()).version == "v2"
