"""Benchmark: workflow starts through the signaler (in-process ``Signaler`` and ``POST /instruction`` over HTTP)
against a direct ``client.start_workflow``, in one run on the dev server with a database file; plus how fast a
flag change reaches routing.

    .venv/bin/python bench/signaler.py [--count 500] [--throughput 1000] [--concurrency 20]

Latency is measured with one start at a time, the three methods interleaved round by round (so a drift of the
machine hits them alike); throughput with ``--concurrency`` starts in flight. The HTTP app runs as its own
process (``diachronic serve``), as in production. The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from temporalio.client import Client

from diachronic.devserver import PORT_OFFSETS, free_port, start_dev_server, stop_process, wait_for_port
from diachronic.flags.local import LocalFlagStore
from diachronic.settings import load_settings
from diachronic.signaler import Signaler, StartArgs
from diachronic.temporal import connect

WORKFLOW = "benchsig"
TOKEN = "bench-token"
ROUNDS = 10

Start = Callable[[str], Awaitable[str]]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def methods(client: Client, signaler: Signaler, http: httpx.AsyncClient, direct_queue: str) -> dict[str, Start]:
    async def direct(workflow_id: str) -> str:
        await client.start_workflow(WORKFLOW, id=workflow_id, task_queue=direct_queue)
        return direct_queue

    async def inprocess(workflow_id: str) -> str:
        started = await signaler.start(StartArgs(workflow_id=workflow_id, workflow_type=WORKFLOW))
        return started.task_queue

    async def over_http(workflow_id: str) -> str:
        body = {"action": "start", "args": {"workflowId": workflow_id, "workflowType": WORKFLOW, "taskQueue": ""}}
        response = await http.post("/instruction", json=body)
        response.raise_for_status()
        return str(response.json()["taskQueue"])

    return {"direct": direct, "inprocess": inprocess, "http": over_http}


async def latencies(starts: dict[str, Start], count: int) -> dict[str, list[float]]:
    """Milliseconds per start, one at a time, methods interleaved in ROUNDS rounds."""
    result: dict[str, list[float]] = {name: [] for name in starts}
    per_round = max(1, count // ROUNDS)
    for _ in range(ROUNDS):
        for name, start in starts.items():
            for _ in range(per_round):
                workflow_id = f"{name}-{uuid.uuid4().hex}"
                began = time.perf_counter()
                await start(workflow_id)
                result[name].append((time.perf_counter() - began) * 1000)
    return result


async def throughput(start: Start, name: str, count: int, concurrency: int) -> float:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with semaphore:
            await start(f"{name}-tp-{i}-{uuid.uuid4().hex[:8]}")

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return count / (time.perf_counter() - began)


async def route_micro(signaler: Signaler, count: int = 5000) -> tuple[float, float]:
    """Microseconds per routing decision alone (flag evaluation), and per everything ``Signaler.start`` does
    besides the Temporal call (validate the request, route, build the start options)."""
    began = time.perf_counter()
    for i in range(count):
        await signaler.route(WORKFLOW, f"user-{i}")
    route_us = (time.perf_counter() - began) / count * 1e6
    began = time.perf_counter()
    for i in range(count):
        args = StartArgs(workflow_id=f"user-{i}", workflow_type=WORKFLOW)
        await signaler.route(WORKFLOW, args.workflow_id, is_test=args.routing_is_test())
        args.start_kwargs()
    return route_us, (time.perf_counter() - began) / count * 1e6


async def flag_change(data: Path, signaler: Signaler, starts: dict[str, Start], v2_queue: str) -> tuple[float, float]:
    """Seconds from a flag write in another connection (as the CI or a human makes it) until routing follows,
    in-process and over HTTP (the ``diachronic serve`` process has its own store)."""
    # Ids that the 50 % rollout still sends to v1: after 100 % they must go to v2.
    on_v1 = [f"fc-{i}" for i in range(400)]
    on_v1 = [i for i in on_v1 if (await signaler.route(WORKFLOW, i)).task_queue != v2_queue][:200]
    writer = LocalFlagStore(data / "flags.sqlite3")
    try:
        flag = (await writer.list_version_flags(WORKFLOW))[0].info.flag_name
        await writer.set_general_percent(flag, 100)
        changed = time.perf_counter()
        inprocess_s = http_s = None
        for workflow_id in on_v1:
            if inprocess_s is None and (await signaler.route(WORKFLOW, workflow_id)).task_queue == v2_queue:
                inprocess_s = time.perf_counter() - changed
            if http_s is None and await starts["http"](f"{workflow_id}") == v2_queue:
                http_s = time.perf_counter() - changed
            if inprocess_s is not None and http_s is not None:
                break
        assert inprocess_s is not None and http_s is not None, "the flag change never reached routing"
        await writer.set_general_percent(flag, 50)
    finally:
        await writer.close()
    return inprocess_s, http_s


def serve_http(data: Path, address: str, port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "DIACHRONIC_DATA_DIR": str(data),
        "DIACHRONIC_TEMPORAL_ADDRESS": address,
        "DIACHRONIC_SIGNALER_TOKEN": TOKEN,
        "DIACHRONIC_GITHUB_WEBHOOK_SECRET": "bench",
    }
    command = [str(Path(sys.executable).parent / "diachronic"), "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port("127.0.0.1", port, timeout_s=30, process=process)
    return process


async def run(count: int, throughput_count: int, concurrency: int) -> dict[str, float | int | str]:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        server = start_dev_server(data, port=free_port(PORT_OFFSETS), ui=False)
        http_port = free_port()
        flags = LocalFlagStore(data / "flags.sqlite3")
        http_server: subprocess.Popen[bytes] | None = None
        try:
            # Mid-rollout routing, the common case: v1 at 100 %, v2 newer at 50 % (two flags evaluated per start).
            v1 = await flags.apply_version_flag(WORKFLOW, "v1")
            await flags.set_general_percent(v1.flag_name, 100)
            v2 = await flags.apply_version_flag(WORKFLOW, "v2")
            await flags.set_general_percent(v2.flag_name, 50)
            client = await connect(load_settings(data_dir=data, temporal_address=server.address))
            signaler = Signaler(client, flags)
            http_server = serve_http(data, server.address, http_port)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{http_port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
            ) as http:
                starts = methods(client, signaler, http, v1.task_queue)
                log(f"dev server with a database file at {server.address}; {os.cpu_count()} CPUs; warming up")
                await latencies(starts, 3 * ROUNDS)
                ms = await latencies(starts, count)
                for name, values in ms.items():
                    log(f"{name:9}: p50 {statistics.median(values):6.2f} ms  p99 {percentile(values, 0.99):6.2f} ms")
                rates = {
                    name: await throughput(start, name, throughput_count, concurrency) for name, start in starts.items()
                }
                for name, rate in rates.items():
                    log(f"{name:9}: {rate:6.0f} starts/s at concurrency {concurrency}")
                route_us, decide_us = await route_micro(signaler)
                log(f"routing decision alone: {route_us:.0f} us; all of the signaler's own work: {decide_us:.0f} us")
                inprocess_s, http_s = await flag_change(data, signaler, starts, v2.task_queue)
                log(f"flag change -> routing: in-process {inprocess_s * 1000:.1f} ms, HTTP {http_s * 1000:.1f} ms")
        finally:
            if http_server is not None:
                stop_process(http_server)
            await flags.close()
            server.stop()
    p50 = {name: statistics.median(values) for name, values in ms.items()}
    return {
        "count": count,
        "cpus": os.cpu_count() or 0,
        "load_avg_1m_before": round(load_before, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "direct_p50_ms": round(p50["direct"], 2),
        "direct_p99_ms": round(percentile(ms["direct"], 0.99), 2),
        "inprocess_p50_ms": round(p50["inprocess"], 2),
        "inprocess_p99_ms": round(percentile(ms["inprocess"], 0.99), 2),
        "http_p50_ms": round(p50["http"], 2),
        "http_p99_ms": round(percentile(ms["http"], 0.99), 2),
        "inprocess_overhead_p50_ms": round(p50["inprocess"] - p50["direct"], 2),
        "http_overhead_p50_ms": round(p50["http"] - p50["direct"], 2),
        "route_us": round(route_us, 1),
        "signaler_work_us": round(decide_us, 1),
        "direct_starts_per_s": round(rates["direct"], 1),
        "http_starts_per_s": round(rates["http"], 1),
        "flag_change_inprocess_ms": round(inprocess_s * 1000, 1),
        "flag_change_http_ms": round(http_s * 1000, 1),
        "starts_per_s": round(rates["inprocess"], 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500, help="sequential starts per method (latency)")
    parser.add_argument("--throughput", type=int, default=1000, help="starts per method (throughput)")
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.count, args.throughput, args.concurrency))))
