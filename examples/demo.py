"""The whole flow on one machine — ``make demo`` (or ``python -m examples.demo``).

Starts the embedded Temporal and the CI worker, deploys v1 of the subscription sample (initial: 100 %), starts
subscriptions through the flags, deploys v2 with a compressed schedule, shows the rollout and the migration, and
finishes when v1's worker is stopped and its flag archived. Stops everything it started; exits 0 on success.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.live import Live
from temporalio.client import Client

from diachronic.backends import open_flag_store
from diachronic.ci import client as ci
from diachronic.ci.contracts import DeployOptions, Phase
from diachronic.ci.planner.schedule import format_steps, parse_steps
from diachronic.ci.worker import serve
from diachronic.cli.status import describe, render_progress
from diachronic.contracts import DeployEvent, ci_workflow_id
from diachronic.devserver import start_dev_server
from diachronic.flags import FlagStore
from diachronic.settings import Settings, load_settings
from diachronic.signaler import start_routed
from diachronic.temporal import connect, resolve_connection, wait_for_poller
from diachronic.workers.local import LocalWorkers
from examples.subscription import WORKFLOW_NAME, task_queue
from examples.subscription.shared import SubscriptionStart

console = Console(stderr=True, highlight=False)
PLANS = (("basic", 900), ("standard", 1500), ("premium", 2500))


def event(version: str) -> DeployEvent:
    return DeployEvent(
        workflow_name=WORKFLOW_NAME,
        version_id=version,
        sha=f"demo-{version}",
        environment="development",
        event_time=datetime.now(UTC),
    )


async def start_worker(settings: Settings, workers: LocalWorkers, client: Client, version: str) -> None:
    await workers.start(
        WORKFLOW_NAME,
        version,
        [sys.executable, "-m", f"examples.subscription.worker_{version}"],
        env=resolve_connection(settings).environment(),
        ready_line="worker ready",
    )
    await wait_for_poller(client, task_queue(version))
    console.print(f"  worker {version} polls {task_queue(version)} (a separate process)")


async def deploy_and_watch(client: Client, settings: Settings, version: str, options: DeployOptions) -> dict:  # type: ignore[type-arg]
    await ci.deploy(client, settings.ci_task_queue, event(version), options)
    handle = client.get_workflow_handle(ci_workflow_id(WORKFLOW_NAME))
    result = asyncio.ensure_future(handle.result())
    if console.is_terminal:
        with Live(console=console, refresh_per_second=4) as live:
            while not result.done():
                live.update(render_progress([await ci.status(client, WORKFLOW_NAME)]))
                await asyncio.wait([result], timeout=0.5)
    else:
        last = ""
        while not result.done():
            line = describe(await ci.status(client, WORKFLOW_NAME))
            if line != last:
                console.print(f"  {line}")
                last = line
            await asyncio.wait([result], timeout=0.5)
    outcome: dict = await result  # type: ignore[type-arg]
    return outcome


async def start_subscriptions(client: Client, flags: FlagStore, count: int) -> list[str]:
    async def one(n: int) -> str:
        plan, price = PLANS[n % len(PLANS)]
        start = SubscriptionStart(customer_id=f"customer-{n}", plan=plan, price_cents=price, renew_every_s=5)
        started = await start_routed(
            client, flags, workflow_name=WORKFLOW_NAME, workflow_id=f"subscription-customer-{n}", args=[start]
        )
        return started.task_queue

    queues = await asyncio.gather(*(one(n) for n in range(count)))
    return list(queues)


async def count_on(client: Client, queue: str) -> int:
    return (await client.count_workflows(f'TaskQueue="{queue}" AND ExecutionStatus="Running"')).count


async def run(settings: Settings, count: int, steps: str) -> bool:
    client = await connect(settings)
    flags = open_flag_store(settings)
    workers = LocalWorkers(settings.workers_dir, grace_s=5)
    stop = asyncio.Event()
    ci_worker = asyncio.ensure_future(serve(settings, stop))
    try:
        console.print("[bold]1. v1, the initial deployment[/bold]")
        await start_worker(settings, workers, client, "v1")
        await deploy_and_watch(client, settings, "v1", DeployOptions())
        console.print(f"  v1 routes 100 % of new starts; starting {count} subscriptions through the flags")
        queues = await start_subscriptions(client, flags, count)
        console.print(f"  {queues.count(task_queue('v1'))} subscriptions run on {task_queue('v1')}")

        console.print(f"[bold]2. v2: roll out ({steps}), migrate the running v1 subscriptions, retire v1[/bold]")
        await start_worker(settings, workers, client, "v2")
        began = time.monotonic()
        result = await deploy_and_watch(
            client, settings, "v2", DeployOptions(steps=parse_steps(steps), poll_interval_s=0.5)
        )
        took = time.monotonic() - began
        [record] = result["deployments"]
        on_v1, on_v2 = await count_on(client, task_queue("v1")), await count_on(client, task_queue("v2"))
        v1_flag = [
            f for f in await flags.list_version_flags(WORKFLOW_NAME, include_archived=True) if f.info.version_id == "v1"
        ]
        v1_workers = await workers.find(WORKFLOW_NAME, "v1")
        ok = (
            record["phase"] == Phase.COMPLETED.value
            and on_v1 == 0
            and on_v2 == count
            and all(f.archived for f in v1_flag)
            and not v1_workers
        )
        console.print("[bold]3. summary[/bold]")
        console.print(
            f"  deployment v1 -> v2: {record['phase']} in {took:.1f} s (schedule {format_steps(parse_steps(steps))})"
        )
        console.print(
            f"  migrate signals sent: {record['migration']['signalled']}; running on v1: {on_v1}, on v2: {on_v2}"
        )
        console.print(f"  v1 workers stopped: {', '.join(record['migration']['deletedWorkers']) or 'none found'}")
        console.print(f"  v1 flag archived: {record['migration']['archivedFlag']}")
        console.print("[green]demo passed[/green]" if ok else "[red]demo failed: see above[/red]")
        return ok
    finally:
        stopped = await workers.stop_all()
        console.print(f"  stopped workers: {', '.join(stopped) or 'none left'}")
        stop.set()
        await ci_worker
        await flags.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="examples.demo", description=__doc__)
    parser.add_argument("--count", type=int, default=200, help="subscriptions to start on v1")
    parser.add_argument("--steps", default="25@3s,50@3s,75@3s,100@3s", help="v2's rollout schedule")
    parser.add_argument("--data-dir", type=Path, default=Path(".diachronic/demo"), help="wiped at start")
    parser.add_argument("--temporal-port", type=int, default=7255)
    args = parser.parse_args(argv)
    shutil.rmtree(args.data_dir, ignore_errors=True)
    started = time.monotonic()
    server = start_dev_server(args.data_dir, port=args.temporal_port, ui=False)
    console.print(f"Temporal dev server {server.address} (database {args.data_dir / 'temporal.db'})")
    settings = load_settings(data_dir=args.data_dir, **server.connection_settings())
    try:
        ok = asyncio.run(run(settings, args.count, args.steps))
    finally:
        server.stop()
        console.print(f"stopped Temporal; demo took {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
