"""A real worker process for CI tests: serves the dynamic Sleeper on $DIACHRONIC_TASK_QUEUE."""

from __future__ import annotations

import asyncio
import os
import signal

from temporalio.client import Client
from temporalio.worker import Worker
from tests.ci_workflows import Sleeper


async def main() -> None:
    client = await Client.connect(os.environ["DIACHRONIC_TEMPORAL_ADDRESS"])
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with Worker(client, task_queue=os.environ["DIACHRONIC_TASK_QUEUE"], workflows=[Sleeper]):
        print("worker ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
