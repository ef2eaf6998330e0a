"""Benchmark: the migration at production scale. For each N, on a fresh Temporal dev server (in memory, or with a
database file): the subscription sample's v1 and v2 workers and the CI worker, each its own process as in
production; N subscriptions started on v1 as fast as the server takes them; then v2 deployed with ``100@0s``.

    .venv/bin/python bench/scale.py [--sizes 2000,10000,50000,100000] [--db-file] [--batch-up-to 10000]
                                    [--signals-alone | --no-drain]

Measured for each N, from the deploy: the last migrate signal, the old queue empty, the old version retired
(cleanup); signals/s overall and in the last 10 % (from the migrate activity's calls in the migration workflow's
history); visibility rows read per workflow; the largest event and the longest history of the CI's workflows; the
CI worker's peak RSS; the status query's latency; and Temporal's own batch signal on N other workflows of the same
server (up to ``--batch-up-to``). With ``--signals-alone`` the sample's workers are stopped from the deploy until every
workflow is signalled, so the migration pays only for sending (as Temporal's batch signal does): its signals/s is the
CI's alone. With ``--no-drain`` the sample's workers are stopped before the subscriptions start and never run
again: the subscriptions wait for their first workflow task, the CI signals them all, and the run ends there (the
CI's side alone, for sizes whose drain the machine's workers cannot finish in the time there is: no drain, no
cleanup, no batch signal). The last line printed is one JSON object ``{"runs": [...]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import ROOT, SweepCall, batch_signal, deploy_event, load_average, load_averages, log, read_histories
from examples.subscription import WORKFLOW_NAME, task_queue
from examples.subscription.shared import SubscriptionStart
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from diachronic.ci import client as ci
from diachronic.ci.contracts import (
    STATUS_QUERY,
    CIResult,
    DeployOptions,
    MigrationState,
    cleanup_workflow_id,
    migration_workflow_id,
    rollout_workflow_id,
)
from diachronic.ci.planner.schedule import parse_steps
from diachronic.contracts import ci_workflow_id
from diachronic.devserver import PORT_OFFSETS, DevServer, free_port, start_dev_server, stop_process
from diachronic.errors import DiachronicError
from diachronic.settings import CI_TASK_QUEUE, load_settings
from diachronic.temporal import connect, wait_for_poller
from diachronic.workers.local import LocalWorkers

SIZES = (2000, 10_000, 50_000, 100_000)
START_CONCURRENCY = 200
SAMPLE_S = 2.0
TAIL = 0.10
BATCH_QUEUE = "batch-old"


@dataclass
class Stack:
    """One N's world: the server, a client, the CI worker process and the sample's worker processes."""

    server: DevServer
    client: Client
    data: Path
    env: dict[str, str]
    ci_worker: subprocess.Popen[bytes]
    workers: LocalWorkers


@contextlib.asynccontextmanager
async def stack(db_file: bool) -> AsyncIterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="diachronic-scale-") as tmp:
        data = Path(tmp) / "data"
        server = start_dev_server(data, port=free_port(PORT_OFFSETS), ui=False, in_memory=not db_file, timeout_s=60)
        ci_worker: subprocess.Popen[bytes] | None = None
        workers = LocalWorkers(data / "workers", grace_s=10)
        try:
            client = await connect(load_settings(data_dir=data, temporal_address=server.address))
            # The CI worker and the sample's workers run from this checkout, on the embedded flag store and local
            # worker sets in the data folder (the local backend starts the sample's workers and later deletes v1's).
            env = {"PYTHONPATH": str(ROOT), "DIACHRONIC_TEMPORAL_ADDRESS": server.address}
            env |= {"DIACHRONIC_DATA_DIR": str(data), "DIACHRONIC_FLAGS": "local", "DIACHRONIC_WORKERS": "local"}
            with (Path(tmp) / "ci-worker.log").open("ab") as out:
                ci_worker = subprocess.Popen(
                    [sys.executable, "-m", "diachronic.cli.__main__", "worker"],
                    env={**os.environ, **env},
                    cwd=ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            await wait_for_poller(client, CI_TASK_QUEUE, timeout_s=60)
            await start_sample_workers(workers, env)
            yield Stack(server, client, data, env, ci_worker, workers)
        finally:
            await workers.stop_all()
            if ci_worker is not None:
                stop_process(ci_worker)
            server.stop()


async def start_sample_workers(workers: LocalWorkers, env: dict[str, str]) -> None:
    """The sample's v1 and v2 workers, as the local worker backend runs them (the CI retires v1's)."""
    for version in ("v1", "v2"):
        await workers.start(
            WORKFLOW_NAME,
            version,
            [sys.executable, "-m", "examples.subscription.worker", "--version", version],
            env=env,
            ready_line="worker ready",
            timeout_s=60,
        )


async def workers_running(s: Stack) -> bool:
    return bool(await s.workers.find(WORKFLOW_NAME, "v1"))


async def stop_sample_workers(workers: LocalWorkers) -> None:
    for version in ("v1", "v2"):
        for worker_set in await workers.find(WORKFLOW_NAME, version):
            await workers.delete(worker_set)


def cpu_s(pid: int) -> float:
    """CPU seconds a process has used so far (user + system, its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def processes(s: Stack) -> dict[str, int]:
    """The pids whose CPU the benchmark accounts for: the server, the CI worker, the sample's workers if they run."""
    pids = {"server": s.server.process.pid, "ci_worker": s.ci_worker.pid}
    for version in ("v1", "v2"):
        for worker_set in await s.workers.find(WORKFLOW_NAME, version):
            assert worker_set.pid is not None
            pids[f"{version}_worker"] = worker_set.pid
    return pids


def rss_mb(pid: int, field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


async def start_subscriptions(client: Client, count: int, queue: str, workflow_type: str = WORKFLOW_NAME) -> float:
    """Start ``count`` subscriptions (monthly renewals: they run for the whole benchmark); returns starts/s."""
    semaphore = asyncio.Semaphore(START_CONCURRENCY)

    async def one(i: int) -> None:
        async with semaphore:
            start = SubscriptionStart(customer_id=f"customer-{i}", plan="basic", price_cents=900)
            await client.start_workflow(workflow_type, start, id=f"{workflow_type}-{i}", task_queue=queue)

    began = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(count)))
    return count / (time.monotonic() - began)


async def running(client: Client, queue: str) -> int:
    return (await client.count_workflows(f'TaskQueue="{queue}" AND ExecutionStatus="Running"')).count


async def backlog(client: Client, queue: str) -> int:
    """Workflow tasks waiting on the queue (the worker has not picked them up yet), as Temporal estimates it."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        report_stats=True,
    )
    response = await client.workflow_service.describe_task_queue(request)
    return int(response.stats.approximate_backlog_count)


async def settle(client: Client, queue: str, count: int) -> None:
    """Until every run shows in visibility and v1's worker has taken each first workflow task (timers set)."""
    while await running(client, queue) < count or await backlog(client, queue) > 0:
        await asyncio.sleep(SAMPLE_S)


def rates(calls: list[SweepCall]) -> tuple[datetime, datetime, float, float]:
    """(first signal, last signal, signals/s overall, signals/s over the last 10 % of the signals), from the calls
    that sent signals: a call's signals are spread evenly over its span (one call: ten pages)."""
    sending = [c for c in calls if c.progress.signalled + c.progress.resent]
    total = sum(c.progress.signalled + c.progress.resent for c in sending)
    first, last = sending[0].started, sending[-1].completed
    tail_from = total * (1 - TAIL)
    done = 0.0
    tail_start = first
    for call in sending:
        sent = call.progress.signalled + call.progress.resent
        if done + sent >= tail_from:
            share = (tail_from - done) / sent
            tail_start = call.started + (call.completed - call.started) * share
            break
        done += sent
    overall = total / max((last - first).total_seconds(), 1e-3)
    tail = total * TAIL / max((last - tail_start).total_seconds(), 1e-3)
    return first, last, overall, tail


async def run_size(n: int, *, db_file: bool, batch_up_to: int, signals_alone: bool, no_drain: bool) -> dict[str, Any]:
    storage = "database file" if db_file else "in memory"
    uptime_before = load_averages()
    log(f"--- N = {n}: dev server {storage}, load average {uptime_before}")
    async with stack(db_file) as s:
        client, old_queue = s.client, task_queue("v1")
        await ci.deploy(client, CI_TASK_QUEUE, deploy_event(WORKFLOW_NAME, "v1"))
        await client.get_workflow_handle(ci_workflow_id(WORKFLOW_NAME)).result()
        if no_drain:
            await stop_sample_workers(s.workers)
        starts = await start_subscriptions(client, n, old_queue)
        log(f"started {n} subscriptions on v1: {starts:.0f} starts/s")
        if no_drain:
            while await running(client, old_queue) < n:
                await asyncio.sleep(SAMPLE_S)
            log("every subscription shows in visibility (no worker: none has run its first workflow task)")
        else:
            await settle(client, old_queue, n)
            log("every subscription runs on v1 (first workflow task done)")
        if signals_alone:  # the migration pays only for sending: no worker moves a workflow until every one is sent
            await stop_sample_workers(s.workers)
            log(f"the sample's workers stopped: {await workers_running(s)=}")

        pids = await processes(s)
        cpu_before = {name: cpu_s(pid) for name, pid in pids.items()}
        load_before = load_average()
        deployed = datetime.now(UTC)
        await ci.deploy(
            client, CI_TASK_QUEUE, deploy_event(WORKFLOW_NAME, "v2"), DeployOptions(steps=parse_steps("100@0s"))
        )
        status_ms: list[float] = []
        loads: list[float] = [load_before]
        drained: datetime | None = None
        signalled_all = False
        cpu: dict[str, float] = {}
        query_ms: list[float] = []
        migration_handle = client.get_workflow_handle(migration_workflow_id(WORKFLOW_NAME))
        unanswered: list[str] = []  # queries that failed (Temporal says to ask again): counted, not timed
        while drained is None and not signalled_all:
            asked = time.monotonic()
            try:
                status = await ci.status(client, WORKFLOW_NAME)
            except DiachronicError as error:
                unanswered.append(f"status: {error}")
                await asyncio.sleep(SAMPLE_S)
                continue
            status_ms.append((time.monotonic() - asked) * 1000)
            if status.migration is not None:  # the migration runs: its own status query, alone
                asked = time.monotonic()
                try:
                    await migration_handle.query(STATUS_QUERY, result_type=MigrationState)
                    query_ms.append((time.monotonic() - asked) * 1000)
                except RPCError as error:  # e.g. "buffered query cleared" when its workflow task timed out
                    unanswered.append(f"migration query: {error}")
            loads.append(load_average())
            m = status.migration
            if signals_alone and m is not None and m.signalled >= n and not await workers_running(s):
                log("every workflow signalled: the sample's workers start")
                await start_sample_workers(s.workers, s.env)
            left = await running(client, old_queue)
            signalled_all = no_drain and m is not None and m.signalled >= n
            if left == 0:
                drained = datetime.now(UTC)
            if left == 0 or signalled_all:
                cpu = {name: (cpu_s(pid) - cpu_before[name]) * 1000 / n for name, pid in pids.items()}
            elif len(status_ms) % 10 == 0:
                log(f"  {left} left on v1; {m.signalled if m else 0} signalled; status {status_ms[-1]:.0f} ms")
            await asyncio.sleep(SAMPLE_S)
        peak_rss = rss_mb(s.ci_worker.pid, "VmHWM")
        drain_s = cleanup_s = None
        ended = None
        if drained is not None:
            handle = client.get_workflow_handle(ci_workflow_id(WORKFLOW_NAME), result_type=CIResult)
            result = await handle.result()
            last = result.deployments[-1]
            ended = f"{last.phase.value}" + (f" ({last.end.text})" if last.end and last.end.text else "")
            log(f"the deployment of v2 ended {ended}")
            migration = await client.get_workflow_handle(migration_workflow_id(WORKFLOW_NAME)).describe()
            assert migration.close_time is not None
            drain_s, cleanup_s = (drained - deployed).total_seconds(), (migration.close_time - deployed).total_seconds()
            log(f"old queue empty {drain_s:.1f} s after the deploy, v1 retired after {cleanup_s:.1f} s")
        until = "signalled" if drained is None else "drained"
        log(f"CPU ms per workflow, deploy to {until}: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))

        workflows = [
            ci_workflow_id(WORKFLOW_NAME),
            rollout_workflow_id(WORKFLOW_NAME),
            migration_workflow_id(WORKFLOW_NAME),
            cleanup_workflow_id(old_queue),
        ]
        histories = await read_histories(client, workflows)
        first, last, overall, tail = rates(histories.sweeps)
        rows = sum(c.progress.rows for c in histories.sweeps)
        signalled = sum(c.progress.signalled for c in histories.sweeps)
        log(
            f"{signalled} signalled ({sum(c.progress.resent for c in histories.sweeps)} resent) in "
            f"{len(histories.sweeps)} calls: {overall:.0f}/s overall, {tail:.0f}/s in the last 10 %; "
            f"{rows} visibility rows read"
        )

        batch: float | None = None
        if n <= batch_up_to and not no_drain:
            await start_subscriptions(client, n, BATCH_QUEUE, workflow_type="benchbatch")
            while await running(client, BATCH_QUEUE) < n:
                await asyncio.sleep(SAMPLE_S)
            batch = await asyncio.to_thread(batch_signal, s.server.address, BATCH_QUEUE, "batch-new", n)
            log(f"temporal workflow signal --query: {batch:.0f} signals/s")

    uptime_after = load_averages()
    log(f"--- N = {n} done: load average {uptime_after}")
    return {
        "n": n,
        "storage": storage,
        "deploy_to_last_signal_s": round((last - deployed).total_seconds(), 1),
        "deploy_to_drained_s": None if drain_s is None else round(drain_s, 1),
        "deploy_to_cleanup_s": None if cleanup_s is None else round(cleanup_s, 1),
        "signals_per_s": round(overall, 1),
        "tail_signals_per_s": round(tail, 1),
        "visibility_rows_per_workflow": round(rows / n, 3),
        "max_payload_bytes": histories.largest_event_bytes,
        "max_history_events": histories.longest,
        "ci_worker_peak_rss_mb": round(peak_rss, 1),
        "batch_signals_per_s": None if batch is None else round(batch, 1),
        "deployment_end": ended,
        "signalled": signalled,
        "sweep_calls": len(histories.sweeps),
        "deploy_to_first_signal_s": round((first - deployed).total_seconds(), 1),
        "starts_per_s": round(starts, 1),
        "status_ms_p50": round(statistics.median(status_ms), 1),
        "status_ms_max": round(max(status_ms), 1),
        "migration_query_ms_p50": round(statistics.median(query_ms), 1),
        "migration_query_ms_max": round(max(query_ms), 1),
        "queries_unanswered": unanswered[:5] + ([f"... {len(unanswered) - 5} more"] if len(unanswered) > 5 else []),
        "cpu_ms_per_workflow": {name: round(ms, 2) for name, ms in cpu.items()},
        "signals_alone": signals_alone,
        "no_drain": no_drain,
        "load_1m_max": round(max(loads), 2),
        "load_1m_mean": round(statistics.fmean(loads), 2),
        "load_before": uptime_before,
        "load_after": uptime_after,
    }


async def main(sizes: list[int], **options: Any) -> dict[str, Any]:
    return {"runs": [await run_size(n, **options) for n in sizes]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated N (default: %(default)s)")
    parser.add_argument("--db-file", action="store_true", help="the dev server persists to a database file")
    parser.add_argument("--batch-up-to", type=int, default=10_000, help="Temporal's batch signal up to this N")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--signals-alone",
        action="store_true",
        help="stop the sample's workers from the deploy until every workflow is signalled (signals/s of sending alone)",
    )
    mode.add_argument(
        "--no-drain",
        action="store_true",
        help="no sample worker runs after the subscriptions start; end once every workflow is signalled (the CI alone)",
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size]
    options = {
        "db_file": args.db_file,
        "batch_up_to": args.batch_up_to,
        "signals_alone": args.signals_alone,
        "no_drain": args.no_drain,
    }
    print(json.dumps(asyncio.run(main(sizes, **options))))
