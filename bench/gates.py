"""Benchmark: a broken version under traffic, stopped by the health analysis.

    .venv/bin/python bench/gates.py [--old 200] [--rate 10] [--step-wait 10] [--poll 1]

On the dev server with a database file (its own, on free ports), with the CI worker, the subscription sample's
healthy v2 and broken v3 workers (``examples/subscription/v3.py``: every workflow task fails) in this process:
``--old`` subscriptions run on v2, new ones start through the signaler at ``--rate`` per second, and v3 is deployed
with a 10 %-per-step schedule. Measured, from Temporal's own histories:

- first failing workflow → abort: from the first failed workflow task of a v3 workflow to the moment the CI wrote
  0 % for v3 (target: one poll interval + 5 s); detection (the health workflow's verdict) is reported apart;
- the share of new starts routed to v3 between its first step and the abort.

The last line printed is one JSON object with the results (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.subscription import WORKFLOW_NAME, task_queue
from examples.subscription.shared import SubscriptionStart
from examples.subscription.worker import build_worker
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from diachronic.ci import client as ci
from diachronic.ci.activities import CIActivities
from diachronic.ci.contracts import DeployOptions, Phase, health_workflow_id
from diachronic.ci.planner.schedule import default_steps
from diachronic.ci.worker import ci_worker
from diachronic.contracts import DeployEvent, ci_workflow_id
from diachronic.devserver import PORT_OFFSETS, free_port, start_dev_server
from diachronic.flags.local import LocalFlagStore
from diachronic.settings import load_settings
from diachronic.signaler import start_routed
from diachronic.temporal import connect
from diachronic.workers.local import LocalWorkers

CI_QUEUE = "bench-gates-ci"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def deploy_event(version: str) -> DeployEvent:
    return DeployEvent(
        workflow_name=WORKFLOW_NAME, version_id=version, sha=version, environment="development", event_time=now()
    )


def now() -> datetime:
    return datetime.now(UTC)


def subscription(n: int) -> SubscriptionStart:
    return SubscriptionStart(customer_id=f"c{n}", plan="basic", price_cents=900, renew_every_s=3600)


async def until_phase(client: Client, *phases: Phase) -> Phase:
    while (status := await ci.status(client, WORKFLOW_NAME)).phase not in phases:
        await asyncio.sleep(0.2)
    return status.phase


async def traffic(
    client: Client, flags: LocalFlagStore, rate: float, stop: asyncio.Event
) -> list[tuple[datetime, str]]:
    """New subscriptions through the signaler at ``rate`` per second: (when, task queue) of each start."""
    started: list[tuple[datetime, str]] = []
    n = 0
    while not stop.is_set():
        began = time.monotonic()
        when = now()
        routed = await start_routed(
            client, flags, workflow_name=WORKFLOW_NAME, workflow_id=f"new-{n}", args=[subscription(n)]
        )
        started.append((when, routed.task_queue))
        n += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(1 / rate - (time.monotonic() - began), 0))
    return started


async def first_task_failure(client: Client, queue: str) -> datetime:
    """The first failed workflow task among the first workflows that ran on ``queue``."""
    times = []
    async for execution in client.list_workflows(f'TaskQueue="{queue}"', limit=20):
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        times += [
            e.event_time.ToDatetime(tzinfo=UTC)
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        ][:1]
    return min(times)


async def abort_written(client: Client) -> datetime:
    """When the CI's write of 0 % for the broken version completed (its route back, in the CI's history)."""
    history = await client.get_workflow_handle(ci_workflow_id(WORKFLOW_NAME)).fetch_history()
    writes: dict[int, bool] = {}
    last: datetime | None = None
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == "set_traffic_percent":
                writes[event.event_id] = json.loads(attrs.input.payloads[0].data)["percent"] == 0
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED and writes.get(
            event.activity_task_completed_event_attributes.scheduled_event_id
        ):
            last = event.event_time.ToDatetime(tzinfo=UTC)
    assert last is not None, "the CI never wrote 0 %"
    return last


async def run(old: int, rate: float, step_wait_s: float, poll_s: float) -> dict[str, float | int | str]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        server = start_dev_server(data, port=free_port(PORT_OFFSETS), ui=False)
        try:
            client = await connect(load_settings(data_dir=data, temporal_address=server.address))
            flags = LocalFlagStore(data / "flags.sqlite3")
            workers = LocalWorkers(data / "workers")
            activities = CIActivities(flags, workers, client, environment="development")
            v2, v3 = task_queue("v2"), task_queue("v3")
            async with (
                ci_worker(client, CI_QUEUE, activities),
                build_worker(client, "v2", v2),
                build_worker(client, "v3", v3),
            ):
                await ci.deploy(client, CI_QUEUE, deploy_event("v2"))
                await until_phase(client, Phase.COMPLETED)
                for n in range(old):
                    await client.start_workflow(WORKFLOW_NAME, subscription(n), id=f"old-{n}", task_queue=v2)
                log(f"{old} subscriptions on v2; new ones at {rate}/s; deploying the broken v3, 10 % per step")
                stop = asyncio.Event()
                load = asyncio.create_task(traffic(client, flags, rate, stop))
                options = DeployOptions(steps=default_steps(10, step_wait_s), poll_interval_s=poll_s)
                await ci.deploy(client, CI_QUEUE, deploy_event("v3"), options)
                phase = await until_phase(client, Phase.ABORTED, Phase.COMPLETED, Phase.FAILED)
                stop.set()
                started = await load
                status = await ci.status(client, WORKFLOW_NAME)
                failed_at = await first_task_failure(client, v3)
                aborted_at = await abort_written(client)
                verdict = (await client.get_workflow_handle(health_workflow_id(WORKFLOW_NAME)).describe()).close_time
                assert verdict is not None
                window = [q for when, q in started if when <= aborted_at]
                reached = sum(1 for q in window if q == v3)
        finally:
            server.stop()
    result: dict[str, float | int | str] = {
        "phase": phase.value,
        "rule": status.end.reason if status.end and status.end.reason else "",
        "poll_s": poll_s,
        "first_failure_to_verdict_s": round((verdict - failed_at).total_seconds(), 2),
        "first_failure_to_abort_s": round((aborted_at - failed_at).total_seconds(), 2),
        "starts_before_abort": len(window),
        "starts_on_broken_version": reached,
        "share_on_broken_version": round(reached / len(window), 3) if window else 0.0,
        "load_1min": round(os.getloadavg()[0], 2),
    }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=int, default=200, help="subscriptions running on v2 before the deploy")
    parser.add_argument("--rate", type=float, default=10.0, help="new subscriptions per second during the deploy")
    parser.add_argument("--step-wait", type=float, default=10.0, help="seconds per 10 %% step")
    parser.add_argument("--poll", type=float, default=1.0, help="the CI's poll interval in seconds")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.old, args.rate, args.step_wait, args.poll))))
