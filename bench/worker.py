"""A worker process for benchmarks: serves the dynamic Sleeper on every queue given (``--queues a,b``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.client import Client
from temporalio.worker import Worker
from tests.ci_workflows import Sleeper


async def main(address: str, queues: list[str]) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        for queue in queues:
            worker = Worker(client, task_queue=queue, workflows=[Sleeper], max_concurrent_workflow_task_polls=20)
            await stack.enter_async_context(worker)
        print("worker ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--queues", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.address, args.queues.split(",")))
