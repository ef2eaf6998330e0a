"""Benchmark: migrate signals/s of the migration workflow vs a bare SDK signal loop vs Temporal's batch signal,
all in one run on the dev server with a database file; plus drain-to-cleanup and hand-edit-to-stop latencies.

    .venv/bin/python bench/migration.py [--count 2000]

The last line printed is one JSON object with the results (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import ROOT, batch_signal, deploy_event, log, read_histories
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from diachronic.ci import client as ci
from diachronic.ci.contracts import DeployOptions
from diachronic.ci.planner.schedule import parse_steps
from diachronic.ci.worker import serve
from diachronic.contracts import MIGRATE_SIGNAL, ci_workflow_id
from diachronic.devserver import PORT_OFFSETS, free_port, start_dev_server, stop_process
from diachronic.flags.local import LocalFlagStore
from diachronic.settings import load_settings
from diachronic.temporal import connect

CONCURRENCY = 50
CI_QUEUE = "bench-ci"


async def start_many(client: Client, workflow_type: str, queue: str, count: int) -> dict[str, str]:
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> tuple[str, str]:
        async with semaphore:
            handle = await client.start_workflow(workflow_type, {"i": i}, id=f"{workflow_type}-{i}", task_queue=queue)
            return handle.id, handle.result_run_id or ""

    return dict(await asyncio.gather(*(one(i) for i in range(count))))


async def running(client: Client, queue: str) -> int:
    return (await client.count_workflows(f'TaskQueue="{queue}" AND ExecutionStatus="Running"')).count


async def wait_count(client: Client, queue: str, expected: int) -> None:
    while await running(client, queue) != expected:
        await asyncio.sleep(0.2)


async def bare_loop(client: Client, runs: dict[str, str], new_queue: str) -> float:
    """The baseline: one process signalling every run with asyncio concurrency 50, nothing else."""
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(workflow_id: str, run_id: str) -> None:
        async with semaphore:
            await client.get_workflow_handle(workflow_id, run_id=run_id).signal(
                MIGRATE_SIGNAL, {"taskQueue": new_queue}
            )

    began = time.monotonic()
    await asyncio.gather(*(one(w, r) for w, r in runs.items()))
    return len(runs) / (time.monotonic() - began)


async def migration_numbers(client: Client, workflow: str, old_queue: str) -> tuple[float, int, float]:
    """From the migration workflow's own history: signals/s over the sweep calls that signalled, and how long after
    the last old workflow left the old queue the cleanup (finding the old workers) started."""
    histories = await read_histories(client, [f"migration.{workflow}"])
    spans = [call for call in histories.sweeps if call.progress.signalled]
    signals = sum(call.progress.signalled for call in spans)
    seconds = (spans[-1].completed - spans[0].started).total_seconds()
    cleanup_at = min(
        event.event_time.ToDatetime(tzinfo=UTC)
        for events in histories.events.values()
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == "find_workers"
    )
    last_left = max(
        [e.close_time async for e in client.list_workflows(f'TaskQueue="{old_queue}"') if e.close_time is not None]
    )
    return signals / seconds, signals, (cleanup_at - last_left).total_seconds()


async def hand_edit_to_stop(client: Client, flags: LocalFlagStore, workflow: str) -> float:
    """A human sets the percentage by hand (another process on the same flag store): when did the rollout stop?"""
    await ci.deploy(client, CI_QUEUE, deploy_event(workflow, "v3"), DeployOptions(steps=parse_steps("50@0s,100@1h")))
    rollout = client.get_workflow_handle(f"rollout.{workflow}")
    while True:
        status = await ci.status(client, workflow)
        if status.rollout_percent == 50 and status.to_version and status.to_version.version_id == "v3":
            break
        await asyncio.sleep(0.1)
    edited = datetime.now(UTC)
    await flags.set_general_percent(status.to_version.flag_name, 80)
    await rollout.result()
    closed = (await rollout.describe()).close_time
    assert closed is not None
    await client.get_workflow_handle(ci_workflow_id(workflow)).terminate("bench over")
    return (closed - edited).total_seconds()


async def run(count: int) -> dict[str, float | int]:
    """Signals are measured with no worker polling the old queues, so each method pays only for sending; the
    sample's workers start once the migration has signalled everything, and then drain the old queue."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        server = start_dev_server(data, port=free_port(PORT_OFFSETS), ui=False)
        settings = load_settings(data_dir=data, temporal_address=server.address, ci_task_queue=CI_QUEUE)
        worker: subprocess.Popen[bytes] | None = None
        stop_ci = asyncio.Event()
        ci_worker: asyncio.Task[None] | None = None
        human = LocalFlagStore(settings.flags_db)
        try:
            client = await connect(settings)
            log(f"dev server with a database file at {server.address}; {count} workflows per method")

            runs = await start_many(client, "benchbare", "bare-old", count)
            await wait_count(client, "bare-old", count)
            bare = await bare_loop(client, runs, "bare-new")
            log(f"bare SDK signal loop: {bare:.0f} signals/s")

            await start_many(client, "benchbatch", "batch-old", count)
            await wait_count(client, "batch-old", count)
            batch = batch_signal(server.address, "batch-old", "batch-new", count)
            log(f"temporal workflow signal --query: {batch:.0f} signals/s")

            ci_worker = asyncio.create_task(serve(settings, stop_ci))  # `diachronic worker`, in this process
            await ci.deploy(client, CI_QUEUE, deploy_event("benchci", "v1"))
            await client.get_workflow_handle(ci_workflow_id("benchci")).result()
            await start_many(client, "benchci", "benchci-v1", count)
            await wait_count(client, "benchci-v1", count)
            options = DeployOptions(steps=parse_steps("100@0s"))
            await ci.deploy(client, CI_QUEUE, deploy_event("benchci", "v2"), options)
            while (status := await ci.status(client, "benchci")).migration is None or (
                status.migration.signalled < count
            ):
                await asyncio.sleep(0.2)
            queues = "benchci-v1,benchci-v2,benchci-v3"
            worker = subprocess.Popen(
                [sys.executable, "-m", "examples.sleeper", "--queues", queues],
                env={**os.environ, "DIACHRONIC_TEMPORAL_ADDRESS": server.address},
                cwd=ROOT,
            )
            await client.get_workflow_handle(ci_workflow_id("benchci")).result()
            migrate, signalled, drain = await migration_numbers(client, "benchci", "benchci-v1")
            log(f"migration workflow: {migrate:.0f} signals/s ({signalled} signals)")
            log(f"cleanup started {drain:.1f} s after the last old workflow left")
            hand = await hand_edit_to_stop(client, human, "benchci")
            log(f"hand edit -> rollout stopped: {hand:.2f} s")
        finally:
            if worker is not None:
                stop_process(worker)
            stop_ci.set()
            if ci_worker is not None:
                await ci_worker
            await human.close()
            server.stop()
    return {
        "count": count,
        "migrate_signals_per_s": round(migrate, 1),
        "bare_signals_per_s": round(bare, 1),
        "batch_signals_per_s": round(batch, 1),
        "migrate_vs_bare": round(migrate / bare, 2),
        "migrate_vs_batch": round(migrate / batch, 1),
        "drain_to_cleanup_s": round(drain, 2),
        "hand_edit_to_stop_s": round(hand, 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000)
    print(json.dumps(asyncio.run(run(parser.parse_args().count))))
