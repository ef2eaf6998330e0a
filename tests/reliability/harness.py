"""The machinery of the fault-injection suite: real processes, real servers, objective checks.

Everything runs as it would for a user: a Temporal dev server persisting to a database file (started here, so it
can be stopped, killed and restarted on the same file and port), the CI worker as its own process (``diachronic
-v worker``), the subscription sample's workers as local worker processes (``examples.subscription.worker``, the
same registrations the CI's local worker backend finds and deletes), and old workflows started
through the signaler.

Every wait polls a condition until a deadline, and a scenario has a budget for the whole test: once it is spent, the
test fails with what it was waiting for, and everything it started is stopped (pytest-timeout comes only after that,
as the last resort; ``tests/processes.py`` stops what a killed test left).

What is checked comes from outside diachronic's bookkeeping:

- ``audit``: every workflow's chain of runs, read from Temporal's histories: where each run ran, how it ended, and
  how many ``diachronic.v1.migrate`` signals it received (Temporal records every delivered signal);
- ``WorkerWatch``: the worker processes, sampled from ``/proc`` every 0.2 s: which were stopped, and when;
- ``Timeline``: ``diachronic.ci.client.status`` sampled every 0.25 s: what a user saw while the fault lasted;
- ``scan_secrets``: every log line, status answer, CLI output and Temporal history of the run, searched for the
  recognisable secret values that every process had in its environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from examples.subscription import WORKFLOW_NAME, task_queue
from examples.subscription.shared import SubscriptionStart
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError
from tests.command_line import DIACHRONIC
from tests.conditions import eventually

from diachronic.ci import client as ci
from diachronic.ci.contracts import CIStatus, DeployAck, DeployOptions
from diachronic.ci.planner.schedule import parse_steps
from diachronic.contracts import MIGRATE_SIGNAL, DeployEvent, ci_workflow_id
from diachronic.devserver import PORT_OFFSETS, DevServer, free_port, start_dev_server
from diachronic.flags import FlagStore
from diachronic.flags.unleash import UnleashFlagStore
from diachronic.settings import CI_TASK_QUEUE, load_settings
from diachronic.signaler import start_routed
from diachronic.temporal import connect
from diachronic.workers.local import LocalWorkers

log = logging.getLogger("diachronic.reliability")

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
WF = WORKFLOW_NAME
COUNT = int(os.environ.get("DIACHRONIC_CHAOS_WORKFLOWS", "40"))
"""Old workflows per fault test: small in ``make test``, a few hundred in ``make chaos``."""
CHAOS = "DIACHRONIC_CHAOS_WORKFLOWS" in os.environ
"""``make chaos`` (or any explicit count): faults last as long as a real one would (``make test`` keeps them short)."""
FAST_STEPS = "10@1s,25@1s,50@1s,75@1s,100@1s"
POLL_S = 0.25
RESTARTING = (Exception,)
"""What a wait counts as "not yet" here: servers and workers restart on purpose, any error may be one of those."""
SAMPLE_S = 0.4
TEARDOWN_S = 120.0
CLOSE_GRACE_S = 10.0  # an observer that ignores its cancellation must not hold the teardown
"""What a scenario's clean-up may take after its budget is spent: stopping servers and workers, the secret scan."""


def fault_test(budget_s: float) -> list[pytest.MarkDecorator]:
    """The marks of a fault test whose scenario has ``budget_s``: pytest's own timeout only after its clean-up."""
    return [pytest.mark.reliability, pytest.mark.timeout(budget_s + TEARDOWN_S)]


# --------------------------------------------------------------------------------------------------- secrets


def _sentinel(what: str) -> str:
    return f"chaosSECRET-{what}-{uuid.uuid4().hex[:20]}"


@dataclass(frozen=True)
class Secrets:
    """Recognisable secret values, in the environment of every process the suite starts."""

    webhook: str = field(default_factory=lambda: _sentinel("webhook"))
    signaler: str = field(default_factory=lambda: _sentinel("signaler"))
    unleash_admin: str = field(default_factory=lambda: _sentinel("unleashadmin"))  # the secret part of the token
    unleash_client: str = field(default_factory=lambda: _sentinel("unleashclient"))
    kube_token: str = field(default_factory=lambda: _sentinel("kubetoken"))

    @property
    def admin_token(self) -> str:
        return f"*:*.{self.unleash_admin}"

    @property
    def client_token(self) -> str:
        return f"default:development.{self.unleash_client}"

    def values(self) -> dict[str, str]:
        """What must never appear: each token whole, and each secret part on its own."""
        return {
            "webhook secret": self.webhook,
            "signaler token": self.signaler,
            "unleash admin token": self.admin_token,
            "unleash admin secret": self.unleash_admin,
            "unleash client token": self.client_token,
            "unleash client secret": self.unleash_client,
            "kubernetes token": self.kube_token,
        }

    def env(self) -> dict[str, str]:
        """Given to every process, whether it uses them or not: none of them may print what it was given."""
        return {
            "DIACHRONIC_GITHUB_WEBHOOK_SECRET": self.webhook,
            "DIACHRONIC_SIGNALER_TOKEN": self.signaler,
            "DIACHRONIC_UNLEASH_ADMIN_TOKEN": self.admin_token,
            "DIACHRONIC_UNLEASH_CLIENT_TOKEN": self.client_token,
        }


SECRETS = Secrets()


@dataclass
class Leak:
    source: str
    secret: str
    line: str  # the line with the secret replaced, so the report itself leaks nothing


def scan_text(source: str, text: str, secrets: Mapping[str, str]) -> list[Leak]:
    leaks = []
    for line in text.splitlines():
        for name, value in secrets.items():
            if value in line:
                leaks.append(Leak(source, name, line.replace(value, f"<{name}>")[:300]))
    return leaks


def scan_files(paths: Iterable[Path], secrets: Mapping[str, str]) -> tuple[list[Leak], int, int]:
    """(leaks, text lines, bytes) of every readable file, binary ones (SQLite, Temporal's database) included."""
    leaks, lines, size = [], 0, 0
    for path in paths:
        if not path.is_file():
            continue
        raw = path.read_bytes()
        size += len(raw)
        text = raw.decode(errors="replace")
        lines += text.count("\n")
        leaks += scan_text(str(path), text, secrets)
    return leaks, lines, size


class Captured(logging.Handler):
    """Every log record of this test process (diachronic's and temporalio's), formatted, for the secret scan."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.lines.append(self.format(record))


# --------------------------------------------------------------------------------------------------- Temporal


class TemporalServer:
    """``temporal server start-dev`` on a database file; stopped (SIGTERM/SIGKILL), restarted on the same file/port."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port(PORT_OFFSETS)
        self.server: DevServer | None = None
        self.restarts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        return self.data_dir / "temporal.db"

    @property
    def pid(self) -> int | None:
        return self.server.process.pid if self.server else None

    async def start(self) -> None:
        self.server = await asyncio.to_thread(start_dev_server, self.data_dir, port=self.port, ui=False, timeout_s=60)

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> float:
        """Send ``sig`` and wait until the process has exited (the port and the file are free again)."""
        assert self.server is not None
        began = time.monotonic()
        process = self.server.process
        if process.poll() is None:
            process.send_signal(sig)
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        self.server = None
        return time.monotonic() - began

    async def restart(self) -> None:
        self.restarts += 1
        await self.start()

    async def close(self) -> None:
        if self.server is not None:
            await self.stop(signal.SIGTERM)


async def pollers(client: Client, queue: str) -> list[str]:
    """Identities (``<pid>@<host>``) of the workers that polled ``queue`` for workflow tasks recently."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    response = await client.workflow_service.describe_task_queue(request)
    return [p.identity for p in response.pollers]


async def polled_since(client: Client, queue: str, pid: int, since: datetime) -> bool:
    """Whether process ``pid`` polled ``queue`` after ``since`` (proof that it is connected, after a restart)."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    response = await client.workflow_service.describe_task_queue(request)
    return any(
        p.identity.startswith(f"{pid}@") and p.last_access_time.ToDatetime(tzinfo=UTC) > since for p in response.pollers
    )


# --------------------------------------------------------------------------------------------------- processes


class CIWorkerProcess:
    """``diachronic -v worker``: the CI worker as its own OS process, with its log in a file."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            out.write(f"--- reliability: starting the CI worker at {datetime.now(UTC).isoformat()}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                [*DIACHRONIC, "-v", "worker"],
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pids.append(self.process.pid)

    async def wait_polling(self, client: Client, since: datetime, timeout: float = 60) -> None:
        await eventually(
            lambda: polled_since(client, CI_TASK_QUEUE, self.pid, since),
            timeout=timeout,
            what=f"the CI worker (pid {self.pid}) to poll {CI_TASK_QUEUE}",
            not_yet=RESTARTING,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def kill(self) -> None:
        """SIGKILL: no clean-up, no goodbye to Temporal, as in a crash or an OOM kill."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        await asyncio.to_thread(self.process.wait)

    async def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, 30)
        except subprocess.TimeoutExpired:
            await self.kill()


def worker_command(code: str) -> list[str]:
    """The sample's worker entry point, serving ``code`` (v1 or v2) on $DIACHRONIC_TASK_QUEUE."""
    return [PYTHON, "-m", "examples.subscription.worker", "--version", code]


# --------------------------------------------------------------------------------------------------- observations


@dataclass
class Sample:
    t: float  # seconds since the scenario began
    status: CIStatus | None
    error: str | None = None

    def key(self) -> tuple[Any, ...] | None:
        s = self.status
        if s is None:
            return None
        m = s.migration
        version = s.to_version.version_id if s.to_version else None
        return (s.phase, version, s.rollout_percent, m.signalled if m else None, m.on_old_queue if m else None)


class Timeline:
    """``status`` as a user polling it would have seen it, every ``SAMPLE_S``."""

    def __init__(self, client: Client, t0: float) -> None:
        self.client = client
        self.t0 = t0
        self.samples: list[Sample] = []
        self.text: list[str] = []  # every answer and error, verbatim, for the secret scan

    async def sample(self) -> Sample:
        now = time.monotonic() - self.t0
        try:
            async with asyncio.timeout(3):  # not wait_for: in 3.11 it can swallow the task's cancellation
                status = await ci.status(self.client, WF)
            sample = Sample(now, status)
            self.text.append(status.model_dump_json())
        except Exception as error:
            sample = Sample(now, None, f"{type(error).__name__}: {error}")
            self.text.append(sample.error or "")
        self.samples.append(sample)
        return sample

    async def run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(SAMPLE_S)

    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.status is not None]

    def latest(self) -> CIStatus | None:
        for sample in reversed(self.samples):
            if sample.status is not None:
                return sample.status
        return None

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.t <= end]

    def first_change_after(self, t: float) -> float | None:
        """When ``status`` first showed progress (phase, version, percent or migration counts) after ``t``."""
        before = [s for s in self.ok() if s.t <= t]
        if not before:
            return None
        reference = before[-1].key()
        for sample in self.ok():
            if sample.t > t and sample.key() != reference:
                return sample.t
        return None


@dataclass
class WorkerLife:
    name: str
    version: str
    uid: str | None
    first_seen: float
    stopped_at: float | None = None  # seconds since the scenario began
    stopped_wall: datetime | None = None


class WorkerWatch:
    """The local worker processes of the scenario, sampled from their registrations and ``/proc``."""

    def __init__(self, root: Path, t0: float) -> None:
        self.backend = LocalWorkers(root)
        self.t0 = t0
        self.lives: dict[str, WorkerLife] = {}

    async def sample(self) -> None:
        now = time.monotonic() - self.t0
        found = {w.name: w for w in await self.backend.list_all()}
        for name, w in found.items():
            life = self.lives.get(name)
            if life is None or (life.stopped_at is not None and w.running and w.uid != life.uid):
                if w.running:
                    self.lives[name] = WorkerLife(name, w.version_id or "?", w.uid, now)
                continue
            if life.uid != w.uid and life.stopped_at is None:
                life.stopped_at, life.stopped_wall = now, datetime.now(UTC)  # replaced by another process
            elif not w.running and life.stopped_at is None:
                life.stopped_at, life.stopped_wall = now, datetime.now(UTC)
        for name, life in self.lives.items():
            if name not in found and life.stopped_at is None:
                life.stopped_at, life.stopped_wall = now, datetime.now(UTC)

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.sample()
            await asyncio.sleep(0.2)

    def stopped(self) -> dict[str, WorkerLife]:
        return {life.version: life for life in self.lives.values() if life.stopped_at is not None}

    def running(self) -> dict[str, WorkerLife]:
        return {life.version: life for life in self.lives.values() if life.stopped_at is None}


# --------------------------------------------------------------------------------------------------- the audit


@dataclass
class Run:
    workflow_id: str
    run_id: str
    task_queue: str
    migrate_signals: int
    end: str | None  # None: still running; else completed, continued_as_new, failed, terminated, ...
    next_run_id: str | None
    closed_at: datetime | None
    signalled_at: datetime | None = None  # when the (first) migrate signal reached this run


_CLOSES = {
    "workflow_execution_completed_event_attributes": "completed",
    "workflow_execution_continued_as_new_event_attributes": "continued_as_new",
    "workflow_execution_failed_event_attributes": "failed",
    "workflow_execution_terminated_event_attributes": "terminated",
    "workflow_execution_timed_out_event_attributes": "timed_out",
    "workflow_execution_canceled_event_attributes": "canceled",
}


async def run_chain(client: Client, workflow_id: str, run_id: str) -> list[Run]:
    """Every run of a workflow from ``run_id`` on, following continue-as-new, read from Temporal's histories."""
    runs: list[Run] = []
    next_id: str | None = run_id
    while next_id:
        history = await client.get_workflow_handle(workflow_id, run_id=next_id).fetch_history()
        events = history.events
        queue = events[0].workflow_execution_started_event_attributes.task_queue.name
        signal_times = [
            e.event_time.ToDatetime(tzinfo=UTC)
            for e in events
            if e.HasField("workflow_execution_signaled_event_attributes")
            and e.workflow_execution_signaled_event_attributes.signal_name == MIGRATE_SIGNAL
        ]
        last = events[-1]
        end = next((name for attr, name in _CLOSES.items() if last.HasField(attr)), None)
        following = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if end == "continued_as_new"
            else None
        )
        closed_at = last.event_time.ToDatetime(tzinfo=UTC) if end else None
        first_signal = signal_times[0] if signal_times else None
        runs.append(Run(workflow_id, next_id, queue, len(signal_times), end, following, closed_at, first_signal))
        next_id = following
    return runs


@dataclass
class Audit:
    workflows: int
    chains: dict[str, list[Run]]
    final_queue: str
    lost: list[str]
    double_signalled: list[str]
    migrated_runs: int
    completed: int
    on_final_queue: int

    def runs_on(self, queue: str) -> list[Run]:
        return [r for chain in self.chains.values() for r in chain if r.task_queue == queue]

    def summary(self) -> str:
        return (
            f"{self.workflows} workflows: {self.on_final_queue} running on {self.final_queue}, "
            f"{self.completed} finished normally, {len(self.lost)} lost; {self.migrated_runs} runs migrated, "
            f"{len(self.double_signalled)} received the migrate signal more than once"
        )


async def audit(
    client: Client, started: Mapping[str, str | None], final_queue: str, kept_queues: Iterable[str] = ()
) -> Audit:
    """Lost = the last run is neither running on ``final_queue`` (or on one of ``kept_queues``: a version whose
    workflows stay by design, as after a roll-back) nor completed. Double = a run received the migrate signal more
    than once. From histories, with a bounded number of requests in flight."""
    kept = set(kept_queues)
    semaphore = asyncio.Semaphore(16)

    async def one(workflow_id: str, run_id: str | None) -> tuple[str, list[Run]]:
        async with semaphore:
            if run_id is None:  # a start whose answer was lost (server down): find its first run, if any
                found = [e async for e in client.list_workflows(f'WorkflowId="{workflow_id}"')]
                if not found:
                    return workflow_id, []
                run_id = min(found, key=lambda e: e.start_time).run_id
            return workflow_id, await run_chain(client, workflow_id, run_id)

    chains = dict(await asyncio.gather(*(one(w, r) for w, r in started.items())))
    chains = {w: c for w, c in chains.items() if c}
    lost, double, migrated, completed, on_final = [], [], 0, 0, 0
    for workflow_id, chain in chains.items():
        last = chain[-1]
        if last.end is None and last.task_queue == final_queue:
            on_final += 1
        elif last.end is None and last.task_queue in kept:
            pass  # stays on a version that keeps its workflows; its workers must still run (live_workers_stopped)
        elif last.end == "completed":
            completed += 1
        else:
            lost.append(f"{workflow_id}: last run {last.run_id} {last.end or 'running'} on {last.task_queue}")
        for run in chain:
            if run.migrate_signals > 1:
                double.append(f"{workflow_id} run {run.run_id} on {run.task_queue}: {run.migrate_signals} signals")
            if run.migrate_signals == 1 and run.end == "continued_as_new":
                migrated += 1
    return Audit(len(chains), chains, final_queue, lost, double, migrated, completed, on_final)


# --------------------------------------------------------------------------------------------------- the scenario


def event(version: str, *, dark: bool = False) -> DeployEvent:
    return DeployEvent(
        workflow_name=WF,
        version_id=version,
        sha=f"sha-{version}",
        environment="development",
        event_time=datetime.now(UTC),
        is_dark_deploy=dark,
    )


def options(steps: str = FAST_STEPS, *, batch: int | None = None, poll: float = POLL_S) -> DeployOptions:
    return DeployOptions(steps=parse_steps(steps), poll_interval_s=poll, batch_size=batch)


@dataclass
class Scenario:
    """One fault test's world; build it with ``scenario()``."""

    key: str
    folder: Path
    data: Path
    server: TemporalServer
    env: dict[str, str]
    client: Client
    flags: FlagStore
    workers: LocalWorkers
    ci_worker: CIWorkerProcess
    t0: float
    timeline: Timeline
    watch: WorkerWatch
    log_capture: Captured
    secrets: dict[str, str]
    marks: dict[str, float] = field(default_factory=dict)
    started: dict[str, str | None] = field(default_factory=dict)  # workflow id -> first run id
    trickle_failures: int = 0
    extra_text: list[tuple[str, str]] = field(default_factory=list)  # (source, text) for the secret scan
    scanned: dict[str, int] = field(default_factory=dict)
    ci_ready: asyncio.Future[None] | None = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def mark(self, name: str) -> float:
        self.marks[name] = self.now()
        return self.marks[name]

    def background(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.append(task)
        return task

    # -- the world before the fault ------------------------------------------------------------------------------

    async def go_live(self, first: str, workers: Mapping[str, str], *, trickle_every_s: float = 1.0) -> None:
        """Start every version's worker (``{version: sample code}``), deploy ``first`` (initial: 100 % at once),
        start ``COUNT`` old workflows on it, and from then on a new one every ``trickle_every_s``."""
        await self.start_workers(workers)
        await self.deploy(first)
        await self.ci_result(120)
        if isinstance(self.flags, UnleashFlagStore):  # the test's own client routes from what it fetched
            await self.flags.wait_for_routing(WF)
        await self.start_subscriptions(COUNT)
        self.background(self.trickle(trickle_every_s))

    # -- workers ------------------------------------------------------------------------------------------------

    async def start_workers(self, versions: Mapping[str, str]) -> None:
        """Start each version's worker process (``{version: sample code}``) and wait until each polls."""

        async def one(version: str, code: str) -> None:
            await self.workers.start(
                WF,
                version,
                worker_command(code),
                env={**self.env, "DIACHRONIC_TEMPORAL_ADDRESS": self.server.address},
                ready_line="worker ready",
                timeout_s=120,
            )

        await asyncio.gather(*(one(v, c) for v, c in versions.items()))
        await self.watch.sample()

    # -- deployments --------------------------------------------------------------------------------------------

    async def deploy(self, version: str, opts: DeployOptions | None = None, *, dark: bool = False) -> DeployAck:
        """Queue a deployment (``dark``: only test traffic until ``control("continue")``)."""
        if self.ci_ready is not None:
            await self.ci_ready
        return await ci.deploy(self.client, CI_TASK_QUEUE, event(version, dark=dark), opts)

    async def control(self, name: str, reason: str) -> str:
        """``diachronic <name> subscription --reason REASON``: continue, pause, promote..."""
        return await ci.control(self.client, WF, name, reason)

    async def ci_result(self, timeout: float) -> dict[str, Any]:
        """The CI run's result; Temporal may be restarting meanwhile, so RPC errors are waited out."""
        deadline = time.monotonic() + timeout
        while True:
            handle = self.client.get_workflow_handle(ci_workflow_id(WF))
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.1)):
                    result: dict[str, Any] = await handle.result()
                return result
            except (RPCError, ConnectionError) as error:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the CI run did not end within {timeout:.0f} s: {error}") from error
                await asyncio.sleep(0.5)
            except TimeoutError:
                raise AssertionError(
                    f"the CI run did not end within {timeout:.0f} s; last status: {self.timeline.latest()}"
                ) from None

    async def ci_failure(self, timeout: float) -> WorkflowFailureError:
        try:
            result = await self.ci_result(timeout)
        except WorkflowFailureError as failure:
            return failure
        raise AssertionError(f"the CI run was expected to fail, it returned {result}")

    async def until(self, check: Callable[[CIStatus], bool], *, timeout: float, what: str) -> CIStatus:
        async def sampled() -> CIStatus | None:
            status = self.timeline.latest()
            return status if status is not None and check(status) else None

        try:
            result: CIStatus = await eventually(sampled, timeout=timeout, what=what, not_yet=RESTARTING)
        except AssertionError as error:
            raise AssertionError(f"{error}; last status: {self.timeline.latest()}") from None
        return result

    async def rollout_history(self) -> list[tuple[datetime, int]]:
        """The rollout's own record of what it set and when (the workflow's clock): every percentage, in order."""
        status = await self.client.get_workflow_handle(f"rollout.{WF}").query("status")
        return [(datetime.fromisoformat(at), int(percent)) for at, percent in status["history"]]

    async def rollout_percents(self) -> list[int]:
        return [percent for _, percent in await self.rollout_history()]

    # -- workflows ----------------------------------------------------------------------------------------------

    async def start_subscriptions(self, count: int, *, prefix: str = "old", renew_every_s: float | None = None) -> None:
        """``count`` subscriptions started through the signaler (the flags choose the task queue)."""
        semaphore = asyncio.Semaphore(32)

        async def one(n: int) -> None:
            workflow_id = f"{prefix}-{n:05d}"
            start = SubscriptionStart(
                customer_id=f"customer-{n}", plan="standard", price_cents=1500, renew_every_s=renew_every_s
            )
            async with semaphore:
                started = await start_routed(
                    self.client, self.flags, workflow_name=WF, workflow_id=workflow_id, args=[start]
                )
            self.started[workflow_id] = started.run_id

        await asyncio.gather(*(one(n) for n in range(count)))

    async def trickle(self, every_s: float = 1.0) -> None:
        """New subscriptions through the signaler while the deployment runs; failures (servers down) are counted."""
        n = 0
        while True:
            workflow_id = f"new-{n:05d}"
            start = SubscriptionStart(customer_id=f"new-{n}", plan="basic", price_cents=900)
            try:
                async with asyncio.timeout(5):
                    started = await start_routed(
                        self.client, self.flags, workflow_name=WF, workflow_id=workflow_id, args=[start]
                    )
                self.started[workflow_id] = started.run_id
                n += 1
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.trickle_failures += 1
                self.extra_text.append(("signaler start error", f"{type(error).__name__}: {error}"))
                if "already" in str(error):
                    self.started[workflow_id] = None
                    n += 1
                elif not isinstance(error, TimeoutError | RPCError):
                    self.started.setdefault(workflow_id, None)
                    n += 1
            await asyncio.sleep(every_s)

    async def cancel_some(self, fraction: float = 0.05) -> int:
        """Cancel a few old subscriptions (they finish normally, wherever they run)."""
        ids = [w for w in self.started if w.startswith("old-")]
        chosen = ids[:: max(int(1 / fraction), 1)]
        for workflow_id in chosen:
            await self.client.get_workflow_handle(workflow_id).signal("cancel")
        return len(chosen)

    # -- verdicts -----------------------------------------------------------------------------------------------

    async def audit(self, final_version: str, kept: Iterable[str] = ()) -> Audit:
        return await audit(self.client, self.started, task_queue(final_version), [task_queue(v) for v in kept])

    async def verdict(self, result: Mapping[str, Any], final_version: str, kept: Iterable[str] = ()) -> Verdict:
        """The end of the scenario, read from outside diachronic (marks it ``completed``). ``kept``: versions whose
        workflows stay on their queue by design (a roll-back by redeploy leaves them): not lost, their workers live."""
        self.mark("completed")
        kept = list(kept)
        checked = await self.audit(final_version, kept)
        live_stopped = self.live_workers_stopped(checked, [final_version, *kept])
        return Verdict(list(result["deployments"]), checked, live_stopped, await self.scan())

    async def flag_states(self) -> list[tuple[str, bool]]:
        """(version, archived) of every flag of the workflow, newest first."""
        flags = await self.flags.list_version_flags(WF, include_archived=True)
        return [(f.info.version_id, f.archived) for f in flags]

    def live_workers_stopped(self, audit: Audit, live_versions: Iterable[str]) -> list[str]:
        """Workers stopped while their version was live: a live version's, or one whose queue still had runs."""
        problems = []
        live = set(live_versions)
        for version, life in self.watch.stopped().items():
            if version in live:
                problems.append(f"worker of live version {version} stopped at {life.stopped_at:.1f} s")
                continue
            for run in audit.runs_on(task_queue(version)):
                if run.end is None:
                    problems.append(f"{version} stopped while {run.workflow_id} still runs on its queue")
                elif life.stopped_wall is not None and run.closed_at is not None and run.closed_at > life.stopped_wall:
                    problems.append(f"{version} stopped before {run.workflow_id} left its queue")
        for version in live:
            if version not in self.watch.running():
                problems.append(f"no worker of live version {version} runs at the end")
        return problems

    async def histories_text(self) -> list[tuple[str, str]]:
        """The CI's own workflows' histories (inputs, results, failures: what the Temporal UI shows)."""
        texts = []
        query = (
            'WorkflowType="workflowCI" OR WorkflowType="rollout" OR WorkflowType="migration" OR WorkflowType="cleanup"'
        )
        async for execution in self.client.list_workflows(query):
            history = await self.client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
            texts.append((f"history {execution.id}/{execution.run_id}", history.to_json()))
        return texts

    async def scan(self) -> list[Leak]:
        """Everything this scenario produced, searched for the secrets: every file (logs of every process,
        databases), status answers, signaler errors, this process's log records, the CI workflows' histories."""
        # Every file the scenario wrote (logs, registrations, SQLite files, Temporal's database), except the
        # kubeconfig the test hands the CI worker: holding the token is that file's job.
        files = [p for p in self.folder.rglob("*") if p.is_file() and not p.name.startswith("kubeconfig")]
        leaks, lines, size = scan_files(files, self.secrets)
        texts = [
            ("status answers", "\n".join(self.timeline.text)),
            ("test process logs", "\n".join(self.log_capture.lines)),
            *self.extra_text,
        ]
        with contextlib.suppress(RPCError):
            texts += await self.histories_text()
        for source, text in texts:
            lines += text.count("\n") + 1
            size += len(text)
            leaks += scan_text(source, text, self.secrets)
        self.scanned = {"files": len(files), "texts": len(texts), "lines": lines, "bytes": size}
        return leaks

    def write_timeline(self) -> None:
        """What status said, one line per sample, next to the logs (for reading a failure afterwards)."""
        from diachronic.cli.status import describe

        with (self.folder / "status-timeline.txt").open("w") as out:
            for sample in self.timeline.samples:
                line = describe(sample.status) if sample.status is not None else f"error: {sample.error}"
                out.write(f"{sample.t:8.2f} {line}\n")

    async def close(self) -> None:
        """Stop the observers; one that does not stop within seconds is named, and the servers are stopped anyway."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=CLOSE_GRACE_S)
            for task in pending:
                logging.getLogger(__name__).warning("an observer did not stop within %s s: %r", CLOSE_GRACE_S, task)
        with contextlib.suppress(Exception):
            self.write_timeline()


@dataclass
class Verdict:
    """What the scenario left, from outside diachronic's bookkeeping."""

    deployments: list[dict[str, Any]]  # the CI run's records
    audit: Audit
    live_stopped: list[str]
    leaks: list[Leak]

    @property
    def record(self) -> dict[str, Any]:
        """The only deployment of the run."""
        [record] = self.deployments
        return record

    def assert_nothing_lost(self) -> None:
        """The promise under every fault: no workflow lost or signalled twice, no live worker stopped, no secret."""
        assert self.audit.lost == [], self.audit.lost
        assert self.audit.double_signalled == [], self.audit.double_signalled
        assert self.live_stopped == [], self.live_stopped
        assert self.leaks == [], [f"{leak.source}: {leak.secret}: {leak.line}" for leak in self.leaks]


@contextlib.asynccontextmanager
async def scenario(
    key: str,
    folder: Path,
    *,
    budget_s: float,
    flags: FlagStore | None = None,
    env: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
    start_ci_worker: bool = True,
) -> AsyncIterator[Scenario]:
    """A fresh Temporal dev server on its own database file, the CI worker process, and the observers.

    ``budget_s``: how long the test may take (``fault_test(budget_s)`` sets pytest's timeout after it); once spent
    the test fails, saying what it was waiting for, and everything is stopped as after any other failure.
    ``flags``: the test's own view of the flag store (default: the embedded store of the scenario's data folder,
    the same file the CI worker uses); ``env``: settings for the CI worker and the sample workers on top of the
    defaults (embedded flag store, local worker sets, the secrets)."""
    from diachronic.flags.local import LocalFlagStore

    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    server = TemporalServer(data)
    try:
        await server.start()
        settings = load_settings(data_dir=data, temporal_address=server.address)
        client = await eventually(
            lambda: connect(settings), timeout=60, what="Temporal to accept clients", not_yet=RESTARTING
        )
    except BaseException:
        await server.close()
        raise
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "PYTHONUNBUFFERED": "1",
        "DIACHRONIC_DATA_DIR": str(data),
        "DIACHRONIC_TEMPORAL_ADDRESS": server.address,
        "DIACHRONIC_FLAGS": "local",
        "DIACHRONIC_WORKERS": "local",
        **SECRETS.env(),
        **(env or {}),
    }
    store = flags if flags is not None else LocalFlagStore(data / "flags.sqlite3")
    t0 = time.monotonic()
    capture = Captured()
    root_logger = logging.getLogger()
    root_logger.addHandler(capture)
    verbose = [logging.getLogger(name) for name in ("diachronic", "temporalio", "httpx")]
    levels = [logger.level for logger in verbose]
    for logger in verbose:
        logger.setLevel(logging.INFO)
    sc = Scenario(
        key=key,
        folder=folder,
        data=data,
        server=server,
        env=full_env,
        client=client,
        flags=store,
        workers=LocalWorkers(data / "workers", grace_s=5),
        ci_worker=CIWorkerProcess(full_env, folder / "ci-worker.log"),
        t0=t0,
        timeline=Timeline(client, t0),
        watch=WorkerWatch(data / "workers", t0),
        log_capture=capture,
        secrets=dict(secrets or SECRETS.values()),
    )
    try:
        async with asyncio.timeout(budget_s):
            if start_ci_worker:  # the test starts the sample's workers meanwhile; the first deploy waits for it
                since = datetime.now(UTC) - timedelta(seconds=1)
                sc.ci_worker.start()
                sc.ci_ready = asyncio.ensure_future(sc.ci_worker.wait_polling(client, since))
                sc._tasks.append(sc.ci_ready)
            sc.background(sc.timeline.run())
            sc.background(sc.watch.run())
            yield sc
    except TimeoutError:
        raise AssertionError(
            f"the scenario used up its budget of {budget_s:.0f} s; marks {sc.marks}; "
            f"last status: {sc.timeline.latest()}"
        ) from None
    finally:
        await sc.close()
        await sc.ci_worker.stop()
        with contextlib.suppress(Exception):
            await sc.workers.stop_all()
        if flags is None:
            await store.close()
        await server.close()
        root_logger.removeHandler(capture)
        for logger, level in zip(verbose, levels, strict=True):
            logger.setLevel(level)


# --------------------------------------------------------------------------------------------------- a private Unleash

UNLEASH_SCRIPT = ROOT / "scripts" / "unleash" / "unleash.sh"


class PrivateUnleash:
    """An Unleash of our own (own PostgreSQL, own ports, tokens made of the recognisable secrets): stopping it
    disturbs nobody else's tests, and its tokens are the ones the secret scan looks for."""

    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets
        self.root = Path(tempfile.mkdtemp(prefix="diachronic-chaos-unleash-"))
        self.root.chmod(0o755)  # PostgreSQL runs as its own user: it must reach its data folder
        (self.root / "unleash").mkdir()
        (self.root / "unleash" / "secrets").write_text(
            f"ADMIN_SECRET={secrets.unleash_admin}\nCLIENT_SECRET={secrets.unleash_client}\n"
        )
        self.env = {
            **os.environ,
            "DIACHRONIC_DATA_DIR": str(self.root),
            "DIACHRONIC_UNLEASH_PORT": str(free_port()),
            "DIACHRONIC_UNLEASH_PG_PORT": str(free_port()),
        }
        self.url = ""

    def _script(self, command: str) -> str:
        result = subprocess.run(
            [str(UNLEASH_SCRIPT), command], env=self.env, capture_output=True, text=True, timeout=300, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"unleash.sh {command} failed ({result.returncode}):\n{result.stderr[-2000:]}")
        return result.stdout

    def start(self) -> None:
        """Start PostgreSQL and Unleash (or only what is not running), wait for /health GOOD."""
        out = self._script("start")
        for line in out.splitlines():
            if line.startswith("export DIACHRONIC_UNLEASH_URL="):
                self.url = line.split("=", 1)[1].strip()

    def stop_node(self) -> None:
        """Stop the Unleash process; PostgreSQL keeps running: "Unleash is down"."""
        self._script("stop-node")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._script("stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def settings_env(self) -> dict[str, str]:
        return {
            "DIACHRONIC_FLAGS": "unleash",
            "DIACHRONIC_UNLEASH_URL": self.url,
            "DIACHRONIC_UNLEASH_ADMIN_TOKEN": self.secrets.admin_token,
            "DIACHRONIC_UNLEASH_CLIENT_TOKEN": self.secrets.client_token,
            "DIACHRONIC_UNLEASH_REFRESH_S": "0.5",
        }


# --------------------------------------------------------------------------------------------------- the report


def measurement(
    sc: Scenario,
    verdict: Verdict,
    *,
    fault: str,
    what_happened: str,
    fault_s: float | None,
    recover_s: float | None,
    recovered_when: str,
    complete_s: float | None,
    outcome: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A row of the measurements table; ``outcome`` defaults to the phase of the run's only deployment."""
    audit, leaks = verdict.audit, verdict.leaks
    return {
        "key": sc.key,
        "fault": fault,
        "what_happened": what_happened,
        "workflows": audit.workflows,
        "lost": len(audit.lost),
        "double_signals": len(audit.double_signalled),
        "migrated_runs": audit.migrated_runs,
        "finished_normally": audit.completed,
        "live_workers_stopped": len(verdict.live_stopped),
        "secret_occurrences": len(leaks),
        "scanned": sc.scanned,
        "fault_s": None if fault_s is None else round(fault_s, 1),
        "recover_s": None if recover_s is None else round(recover_s, 1),
        "recovered_when": recovered_when,
        "complete_after_fault_s": None if complete_s is None else round(complete_s, 1),
        "outcome": verdict.record["phase"] if outcome is None else outcome,
        "trickle_start_failures": sc.trickle_failures,
        "scenario_s": round(sc.now(), 1),
        "marks": {k: round(v, 2) for k, v in sc.marks.items()},
        **extra,
    }


class Report:
    """The rows of this session; the conftest merges them into the measurements file at the end."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.started = time.monotonic()

    def add(self, row: dict[str, Any]) -> None:
        self.rows[row["key"]] = row
        print(f"\nreliability {row['key']}: " + json.dumps({k: v for k, v in row.items() if k != "marks"}, default=str))


def dump_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str) + "\n")
    os.replace(tmp, path)
