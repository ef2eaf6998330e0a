"""Worker entry point for one version of the subscription sample, as its own OS process.

    python -m examples.subscription.worker --version v1      (or: python -m examples.subscription.worker_v1)

Task queue: ``--task-queue``, else ``DIACHRONIC_TASK_QUEUE``, else ``subscription-<version>``. Temporal: as every
diachronic process reaches it (``diachronic.temporal``: ``TEMPORAL_*``, a ``temporal.toml`` profile,
``DIACHRONIC_TEMPORAL_*``; default 127.0.0.1:7233, plain). Prints ``worker ready: task queue <queue>`` once
polling; stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from temporalio.client import Client
from temporalio.worker import Worker

from diachronic.process import exit_with, stop_on_signals
from diachronic.settings import Settings, load_settings
from diachronic.temporal import connect
from diachronic.workers import TASK_QUEUE_ENV
from examples.subscription import VERSIONS, task_queue, v1, v2, v3
from examples.subscription.activities import charge
from examples.subscription.gate import SubscriptionSmokeTest

READY_LINE = "worker ready: task queue"

WORKFLOWS: dict[str, type] = {
    "v1": v1.SubscriptionWorkflow,
    "v2": v2.SubscriptionWorkflow,
    "v3": v3.SubscriptionWorkflow,
}


def build_worker(client: Client, version: str, queue: str) -> Worker:
    """The worker of one version: that version's workflow class, the sample gate and the charge activity, on its own
    queue."""
    # More pollers than the default 5: a migration wave is one workflow task per workflow, all at once.
    return Worker(
        client,
        task_queue=queue,
        workflows=[WORKFLOWS[version], SubscriptionSmokeTest],
        activities=[charge],
        max_concurrent_workflow_task_polls=20,
    )


async def serve(version: str, queue: str, settings: Settings, stop: asyncio.Event) -> None:
    """Poll ``queue`` until ``stop`` is set, then shut the worker down gracefully."""
    client = await connect(settings)
    async with build_worker(client, version, queue):
        print(f"{READY_LINE} {queue} (subscription {version}, {client.service_client.config.target_host})", flush=True)
        await stop.wait()
    print(f"worker stopped: task queue {queue}", flush=True)


async def _run(version: str, queue: str, settings: Settings) -> int:
    try:
        await serve(version, queue, settings, stop_on_signals())
    except Exception as err:  # the edge of the process: say why in one line, exit non-zero
        print(f"worker failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="examples.subscription.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--version", choices=VERSIONS, required=True, help="which code version to serve")
    parser.add_argument("--task-queue", help=f"task queue (default: ${TASK_QUEUE_ENV}, else subscription-<version>)")
    args = parser.parse_args(argv)
    queue = args.task_queue or os.environ.get(TASK_QUEUE_ENV) or task_queue(args.version)
    return asyncio.run(_run(args.version, queue, load_settings()))


if __name__ == "__main__":
    exit_with(main())
