"""The smallest workflow that obeys diachronic's migrate protocol without the SDK, as the original TypeScript
workers do: any workflow type (dynamic), it waits until told to finish or to move, and on ``diachronic.v1.migrate
{taskQueue}`` continues-as-new on that queue with its arguments. The CI tests and the benchmarks deploy it.

    python -m examples.sleeper [--queues a,b]      (default: $DIACHRONIC_TASK_QUEUE)

Temporal: ``DIACHRONIC_TEMPORAL_ADDRESS`` / ``DIACHRONIC_TEMPORAL_NAMESPACE``. Prints ``worker ready`` once polling;
stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from diachronic.migrate import MIGRATE_SIGNAL

FINISH_SIGNAL = "finish"
READY_LINE = "worker ready"


@workflow.defn(dynamic=True)
class Sleeper:
    """Waits until told to finish; obeys the migrate signal by continuing-as-new, like the original's SDK."""

    def __init__(self) -> None:
        self.target: str | None = None
        self.finished = False
        self.migrate_signals = 0

    @workflow.signal(name=MIGRATE_SIGNAL)
    def migrate(self, arg: Any) -> None:
        self.migrate_signals += 1
        queue = arg.get("taskQueue") if isinstance(arg, dict) else None
        if isinstance(queue, str) and queue and queue != workflow.info().task_queue:
            self.target = queue

    @workflow.signal(name=FINISH_SIGNAL)
    def finish(self) -> None:
        self.finished = True

    @workflow.query(name="where")
    def where(self) -> dict[str, Any]:
        return {"taskQueue": workflow.info().task_queue, "migrateSignals": self.migrate_signals}

    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> str:
        await workflow.wait_condition(lambda: self.target is not None or self.finished)
        if self.finished:
            return workflow.info().task_queue
        workflow.continue_as_new(
            args=[workflow.payload_converter().from_payload(a.payload) for a in args], task_queue=self.target
        )


async def serve(queues: Sequence[str]) -> None:
    """Poll every queue until SIGTERM/SIGINT."""
    # Imported here, not above: the workflow sandbox re-imports this module, and needs none of them.
    from diachronic.process import stop_on_signals
    from diachronic.settings import load_settings
    from diachronic.temporal import connect

    client = await connect(load_settings())
    stop = stop_on_signals()
    async with contextlib.AsyncExitStack() as stack:
        for queue in queues:
            worker = Worker(client, task_queue=queue, workflows=[Sleeper], max_concurrent_workflow_task_polls=20)
            await stack.enter_async_context(worker)
        print(READY_LINE, flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="examples.sleeper", description=__doc__.split("\n")[0])
    parser.add_argument("--queues", help="comma-separated task queues (default: $DIACHRONIC_TASK_QUEUE)")
    args = parser.parse_args(argv)
    queues = args.queues.split(",") if args.queues else [os.environ["DIACHRONIC_TASK_QUEUE"]]
    asyncio.run(serve(queues))


if __name__ == "__main__":
    from diachronic.process import exit_with

    main()
    exit_with(0)
