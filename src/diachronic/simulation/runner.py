"""Run scenarios: the real CI workflows (``diachronic.ci.worker.WORKFLOWS``) on the time-skipping Temporal server,
with every activity replaced by its contract fake and a stateful world answering the ones a scenario scripts.

A scenario sets the world up, drives the CI as users would (deploy, controls, hand edits) in virtual time, and
states what must hold at the end. The runner waits for the CI run (and any cleanup it left running) to end
within a bound of virtual time, then judges the outcome: the expectations, the world's safety referee, and
that a failure, if any, is a clear typed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio.api.testservice.v1 import LockTimeSkippingRequest, UnlockTimeSkippingRequest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from diachronic.ci import client as ci
from diachronic.ci.contracts import (
    DEPLOYING_QUERY,
    STATUS_QUERY,
    CanaryOptions,
    CIInput,
    CIState,
    CIStatus,
    DeployAck,
    Deployment,
    DeployOptions,
    GateOptions,
    HealthThresholds,
    MigrationState,
    Phase,
    RolloutStatus,
    cleanup_workflow_id,
    migration_workflow_id,
    rollout_workflow_id,
)
from diachronic.ci.planner.schedule import parse_steps
from diachronic.ci.worker import PIPELINE_ACTIVITIES, WORKFLOWS
from diachronic.ci.workflow import CIWorkflow
from diachronic.contracts import DEPLOY_SUCCESS_SIGNAL, DeployEvent, ci_workflow_id
from diachronic.errors import InvalidInput, NotFound
from diachronic.settings import venv_binary
from diachronic.simulation.branches import all_branches, recording_decisions
from diachronic.simulation.fakes import ContractFakes, FailurePolicy, activity_contracts
from diachronic.simulation.gate import SimulatedGate
from diachronic.simulation.world import FlagEnd, World, describe_flag
from diachronic.versions import task_queue as version_queue

__all__ = [
    "Check",
    "Expect",
    "Outcome",
    "Report",
    "Scenario",
    "ScenarioEnded",
    "Sim",
    "run_catalog",
    "run_scenario",
]

DEFAULT_STEPS = "25@60s,50@60s,75@60s,100@60s"
DEFAULT_POLL_S = 30.0
DEFAULT_MAX_VIRTUAL_S = 6 * 3600.0
DEFAULT_MAX_WALL_S = 120.0
UNTIL_STEP_S = 7.0  # virtual seconds between two looks of ``until``
OFF_BEAT_S = 0.37  # added to every step: see ``advance``
WATCH_S = 0.05  # wall seconds between looks at the virtual clock while waiting for the end


class ScenarioEnded(Exception):
    """The CI run ended before the scenario could do what it waited for (judged with the rest)."""


class Hang(Exception):
    """Nothing ended within the scenario's bound of virtual (or wall) time."""


@dataclass
class Outcome:
    """Everything a scenario's end is judged on."""

    scenario: str
    workflow_name: str
    world: World
    fakes: ContractFakes
    records: list[Deployment] = field(default_factory=list)
    ci_error: str | None = None  # the CI run's own failure, "Type: message"
    cleanup_errors: list[str] = field(default_factory=list)
    hang: str | None = None
    controls: list[tuple[str, str]] = field(default_factory=list)  # (control, accepted|refused)
    branches: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)  # problems noticed while driving
    rollout_percents: list[int] | None = None
    virtual_s: float = 0.0
    wall_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    typed_failure: str | None = None  # set when a permanent injected error explains an unmet expectation
    retried: str | None = None  # the first run stalled (see ``run_scenario``): why

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def result(self) -> str:
        if self.problems:
            return "FAILED"
        result = "typed failure" if self.typed_failure else "passed"
        return f"{result} (retried)" if self.retried else result

    @property
    def phases(self) -> list[Phase]:
        return [r.phase for r in self.records]

    def runs_of(self, workflow_id: str) -> int:
        """How many runs of ``workflow_id`` called activities: more than one means it continued as new."""
        return len({c.run_id for c in self.fakes.calls if c.workflow_id == workflow_id})


Check = tuple[str, Callable[[Outcome], bool]]
"""A scenario-specific expectation: what it says, and the test."""


@dataclass(frozen=True)
class Expect:
    """What must hold when a scenario ends, beyond the safety invariants that always must."""

    phases: tuple[Phase, ...]  # each deployment's final phase, in order
    ci_fails: bool = False  # the CI run itself ends failed (DeploymentFailed)
    flags: tuple[FlagEnd, ...] | None = None  # every flag of the world, newest first
    workers: frozenset[str] | None = None  # versions whose worker sets are left
    running: Mapping[str, int] | None = None  # workflows left running, by version
    signalled: int | None = None  # migrate signals delivered in all
    called: frozenset[str] = frozenset()  # activities that must have been called
    not_called: frozenset[str] = frozenset()
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True)
class Scenario:
    """A story about deploying a workflow, told against the fake world, with the end it must reach."""

    name: str
    about: str
    setup: Callable[[World, ContractFakes], None]
    drive: Callable[[Sim], Awaitable[None]]
    expect: Expect
    max_virtual_s: float = DEFAULT_MAX_VIRTUAL_S
    world: type[World] = World  # the fake world to build (a subclass may watch it, as the explorer's does)
    cleanups_must_end: bool = True  # False: a cleanup may rightly wait on after the story (its version is routed)


class Sim:
    """What a scenario's ``drive`` acts through: deploys, controls, waiting in virtual time, reading status."""

    def __init__(
        self,
        env: WorkflowEnvironment,
        task_queue: str,
        world: World,
        outcome: Outcome,
        max_virtual_s: float,
        *,
        cleanups_must_end: bool = True,
    ) -> None:
        self.env = env
        self.client: Client = env.client
        self.task_queue = task_queue
        self.world = world
        self.outcome = outcome
        self.workflow_name = world.workflow_name
        self.max_virtual_s = max_virtual_s
        self.cleanups_must_end = cleanups_must_end
        self.started_at: datetime | None = None
        self.ended_at: datetime | None = None  # when the last of the CI run and its cleanups closed
        self.started_wall = time.monotonic()
        self.ended = False
        self.deploys = 0
        self.events: dict[str, DeployEvent] = {}  # the last deploy event sent for each version
        self.ci_runs: list[str] = []  # the CI runs the deploys reached, in order (a new one once a run ended)

    # ------------------------------------------------------------------------------------------- acting

    async def deploy(
        self,
        version: str,
        *,
        dark: bool = False,
        non_migratory: bool = False,
        steps: str | None = DEFAULT_STEPS,
        poll_s: float = DEFAULT_POLL_S,
        batch_size: int | None = None,
        continue_as_new_after: int | None = None,
        ci_input: CIInput | None = None,
        while_running: bool | None = None,
        event_time: datetime | None = None,
        environment: str | None = None,
        gate: GateOptions | None = None,
        ready_timeout_s: float | None = None,
        health: HealthThresholds | None = None,
        migrate_back: bool = False,
        delivery_id: str | None = None,
        retire_delay_s: float | None = None,
        canary: CanaryOptions | None = None,
    ) -> DeployAck:
        """A deployment of ``version`` as ``diachronic deploy`` sends it (``ci_input`` if the CI must start so).

        ``steps=None``: the CI's own schedule (100 % at once for a roll-back by redeploy); ``event_time`` (default:
        now) re-sends an earlier event; ``environment`` defaults to the world's; ``delivery_id``: the GitHub delivery
        the event came in (the webhook's).
        ``while_running`` (the default for every deploy but the first): the story needs the CI still running;
        if it has ended (a failure ended it early), the scenario ends here instead of starting a new CI run."""
        if (self.deploys if while_running is None else while_running) and await self.ci_ended():
            raise ScenarioEnded(f"the CI ended before {version} was deployed")
        self.deploys += 1
        event = DeployEvent(
            workflow_name=self.workflow_name,
            version_id=version,
            sha=version,
            environment=environment or self.world.environment,
            event_time=event_time or await self.now(),
            is_dark_deploy=dark,
            is_non_migratory=non_migratory,
            delivery_id=delivery_id,
        )
        self.events[version] = event
        options = DeployOptions(
            steps=parse_steps(steps) if steps is not None else None,
            poll_interval_s=poll_s,
            batch_size=batch_size,
            continue_as_new_after=continue_as_new_after,
            gate=gate,
            ready_timeout_s=ready_timeout_s,
            health=health,
            migrate_back=migrate_back,
            retire_delay_s=retire_delay_s,
            canary=canary,
        )
        ack = await ci.deploy(self.client, self.task_queue, event, options, ci_input=ci_input)
        run_id = (await self.client.get_workflow_handle(ci_workflow_id(self.workflow_name)).describe()).run_id
        if run_id not in self.ci_runs:
            self.ci_runs.append(run_id)
        if ack.position is not None:
            self.world.queued.append(version)  # what the CI's db query shows the real activity
        return ack

    @contextlib.asynccontextmanager
    async def gate_worker(self, version: str) -> AsyncIterator[None]:
        """The version's workers serve the simulated gate workflow on its task queue (``deploy --gate``)."""
        queue = version_queue(self.workflow_name, version)
        async with Worker(self.client, task_queue=queue, workflows=[SimulatedGate]):
            yield

    async def signal_deploy(self, payload: dict[str, Any]) -> None:
        """The original's deploy signal, with any payload (a bad one, another workflow's), as GitHub's side sends it."""
        await self.client.get_workflow_handle(ci_workflow_id(self.workflow_name)).signal(DEPLOY_SUCCESS_SIGNAL, payload)

    async def control(self, name: str, *, expect: bool | None = None) -> bool:
        """Send a control (continue, cancel, pause, resume, promote, abort); True if accepted.

        ``expect``: note a problem when the answer differs (refused means a typed error and no change)."""
        try:
            await ci.control(self.client, self.workflow_name, name, reason="simulation")
            accepted = True
        except (InvalidInput, NotFound):
            accepted = False
        self.outcome.controls.append((name, "accepted" if accepted else "refused"))
        if expect is not None and accepted != expect:
            self.note(f"{name} was {'accepted' if accepted else 'refused'}, expected the opposite")
        return accepted

    async def rollback(
        self, *, steps: str | None = None, migrate_back: bool = False, expect: bool | None = None
    ) -> bool:
        """``diachronic rollback`` (at once, or down ``steps``); True if accepted (``expect`` as for ``control``)."""
        try:
            await ci.rollback(
                self.client,
                self.workflow_name,
                steps=parse_steps(steps) if steps else None,
                migrate_back=migrate_back,
                reason="simulation",
            )
            accepted = True
        except (InvalidInput, NotFound):
            accepted = False
        self.outcome.controls.append(("rollback", "accepted" if accepted else "refused"))
        if expect is not None and accepted != expect:
            self.note(f"rollback was {'accepted' if accepted else 'refused'}, expected the opposite")
        return accepted

    def note(self, problem: str) -> None:
        self.outcome.notes.append(problem)

    def check(self, what: str, ok: bool) -> None:
        if not ok:
            self.note(f"not true while driving: {what}")

    # ------------------------------------------------------------------------------------------- time

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def elapsed(self) -> float:
        return 0.0 if self.started_at is None else (await self.now() - self.started_at).total_seconds()

    async def out_of_time(self) -> bool:
        """Past the scenario's bound of virtual time (or of wall time, should the server crawl)."""
        return await self.elapsed() > self.max_virtual_s or time.monotonic() - self.started_wall > DEFAULT_MAX_WALL_S

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` (and ``OFF_BEAT_S``) of virtual time pass; ``ScenarioEnded`` if the CI ends meanwhile.

        The extra fraction keeps the next action off the beat of the workflows' whole-second timers: a signal that
        lands on the very millisecond a timer fires has been seen to stall the Java test server.

        Once the CI has ended, a child closing after it leaves the test server's clock locked (a server flaw), so a
        sleep would take real time: the sleep is given up as soon as the CI is seen to have ended."""
        sleeping = asyncio.ensure_future(self.env.sleep(seconds + OFF_BEAT_S))
        while not sleeping.done():
            await asyncio.wait({sleeping}, timeout=WATCH_S * 2)
            if not sleeping.done() and await self.ci_ended():
                sleeping.cancel()
                with contextlib.suppress(asyncio.CancelledError, RPCError):
                    await sleeping
                raise ScenarioEnded(f"the CI ended while {seconds:g} s passed")
        sleeping.result()

    async def until(
        self, what: str, predicate: Callable[[], bool | Awaitable[bool]], *, step_s: float = UNTIL_STEP_S
    ) -> None:
        """Advance virtual time in steps until ``predicate`` holds; ``ScenarioEnded`` if the CI ends first."""
        while True:
            answer = predicate()
            if await answer if inspect.isawaitable(answer) else answer:
                return
            if await self.ci_ended():
                raise ScenarioEnded(f"the CI ended before: {what}")
            if await self.out_of_time():
                raise Hang(f"waited {await self.elapsed():.0f} virtual s for: {what}")
            await self.advance(step_s)

    # ------------------------------------------------------------------------------------------- reading

    async def ci_ended(self) -> bool:
        return await _closed(self.client.get_workflow_handle(ci_workflow_id(self.workflow_name)))

    async def status(self) -> CIStatus:
        return await ci.status(self.client, self.workflow_name)

    async def phase_is(self, phase: Phase) -> bool:
        return (await self.status()).phase is phase

    async def rollout(self) -> RolloutStatus | None:
        try:
            status: RolloutStatus = await self.client.get_workflow_handle(
                rollout_workflow_id(self.workflow_name)
            ).query(STATUS_QUERY, result_type=RolloutStatus)
        except Exception:  # not started yet, or gone: nothing to read
            return None
        return status

    async def migration(self) -> MigrationState | None:
        try:
            handle = self.client.get_workflow_handle(migration_workflow_id(self.workflow_name))
            state: MigrationState = await handle.query(STATUS_QUERY, result_type=MigrationState)
        except Exception:
            return None
        return state

    # ------------------------------------------------------------------------------------------- the end

    async def finish(self) -> None:
        """Wait (time running free) until the CI run and any cleanup it started have ended; bounded."""
        if self.ended:
            return
        self.ended = True
        outcome = self.outcome
        handle = self.client.get_workflow_handle(ci_workflow_id(self.workflow_name))
        outcome.ci_error = await self._wait_end(handle, "the CI run")
        await self._close_children()
        outcome.records = await self._records()
        closed = [(await handle.describe()).close_time]
        for record in outcome.records:
            if record.cleanup_workflow_id is not None and self.cleanups_must_end:
                cleanup = self.client.get_workflow_handle(record.cleanup_workflow_id)
                error = await self._wait_end(cleanup, f"cleanup {record.cleanup_workflow_id}")
                outcome.cleanup_errors += [error] if error else []
                closed.append((await cleanup.describe()).close_time)
        # The server's clock may leap once everything is idle: the last close is when the story ended.
        self.ended_at = max((t for t in closed if t is not None), default=None)
        rollout = await self.rollout()
        outcome.rollout_percents = None if rollout is None else [p for _, p in rollout.history]

    async def _records(self) -> list[Deployment]:
        """Every deployment of the story, across the CI runs it reached (a deploy after a run ended starts a new
        one; a run that continued as new carries its predecessors' records). An earlier run's failure counts."""
        records: dict[tuple[str, datetime | None], Deployment] = {}
        latest = (await self.client.get_workflow_handle(ci_workflow_id(self.workflow_name)).describe()).run_id
        for run_id in [*[r for r in self.ci_runs if r != latest], latest]:
            handle = self.client.get_workflow_handle(ci_workflow_id(self.workflow_name), run_id=run_id)
            state: CIState = await handle.query(CIWorkflow.db)
            for record in state.history:
                records.setdefault((record.request.event.version_id, record.started_at), record)
            if run_id != latest and (await handle.describe()).status is WorkflowExecutionStatus.FAILED:
                self.outcome.ci_error = self.outcome.ci_error or await _failure(handle)
        return list(records.values())

    async def _close_children(self) -> None:
        """Apply the parent close policies the test server ignores: a rollout still running when the CI run ended
        is terminated, a migration is asked to cancel (as a real Temporal server does)."""
        rollout = self.client.get_workflow_handle(rollout_workflow_id(self.workflow_name))
        if await _running(rollout):
            with contextlib.suppress(RPCError):
                await rollout.terminate("parent closed (simulated TERMINATE policy)")
        migration = self.client.get_workflow_handle(migration_workflow_id(self.workflow_name))
        if await _running(migration):
            with contextlib.suppress(RPCError):
                await migration.cancel()
            with contextlib.suppress(Hang):
                await self._wait_end(migration, "the cancelled migration")

    async def _wait_end(self, handle: WorkflowHandle[Any, Any], what: str) -> str | None:
        """Let time run until the workflow (following continue-as-new) closes; its typed failure, if any."""
        async with _time_running(self.client):
            while not await _closed(handle):
                # Once everything has closed the server's clock leaps years ahead: look again before calling it a hang.
                if await self.out_of_time() and not await _closed(handle):
                    raise Hang(f"{what} did not end within {await self.elapsed():.0f} virtual s")
                await asyncio.sleep(WATCH_S)
        if (await handle.describe()).status is WorkflowExecutionStatus.TIMED_OUT:
            # It waited for what never came until the clock leapt past its timeout: a hang, run again like one (the
            # test server has been seen to reject the CI's workflow task that cancels a child closing meanwhile).
            raise Hang(f"{what} timed out after {await self.elapsed():.0f} virtual s")
        return await _failure(handle)

    async def terminate_all(self) -> None:
        """After a hang: stop this scenario's workflows so they do not spin on the shared server."""
        name = self.workflow_name
        ids = [ci_workflow_id(name), rollout_workflow_id(name), migration_workflow_id(name)]
        ids += [cleanup_workflow_id(f.info.task_queue) for f in self.world.flags.values()]
        for workflow_id in ids:
            with contextlib.suppress(RPCError):
                await self.client.get_workflow_handle(workflow_id).terminate("simulation bound reached")


async def _failure(handle: WorkflowHandle[Any, Any]) -> str | None:
    """The typed failure (``Type: message``) of a closed workflow run; None if it completed."""
    try:
        await handle.result(follow_runs=False)
    except WorkflowFailureError as failure:
        cause = failure.cause
        return f"{cause.type}: {cause.message}" if isinstance(cause, ApplicationError) else str(cause)
    return None


async def _deploying(client: Client, workflow_name: str) -> list[str]:
    """What the real ``find_workers`` activity asks the CI: the versions its queue holds or it deploys now."""
    try:
        versions: list[str] = await client.get_workflow_handle(ci_workflow_id(workflow_name)).query(
            DEPLOYING_QUERY, result_type=list[str]
        )
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return []
        raise
    return versions


async def _closed(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether the latest run has closed (a run that continued as new is followed by the next)."""
    try:
        description = await handle.describe()
    except RPCError:
        return False
    return description.status not in (None, WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW)


async def _running(handle: WorkflowHandle[Any, Any]) -> bool:
    try:
        return (await handle.describe()).status is WorkflowExecutionStatus.RUNNING
    except RPCError:
        return False


@contextlib.asynccontextmanager
async def _time_running(client: Client) -> AsyncIterator[None]:
    """Let the time-skipping server skip time freely (as ``handle.result()`` of a started workflow does)."""
    await client.test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
    try:
        yield
    finally:
        await client.test_service.lock_time_skipping(LockTimeSkippingRequest())


# ----------------------------------------------------------------------------------------------- judging


def judge(outcome: Outcome, expect: Expect, *, allow_typed_failure: bool) -> list[str]:
    """The problems with an outcome: unmet expectations (forgiven, when allowed, if a permanent injected error
    explains them) and broken invariants (never forgiven)."""
    world, fakes = outcome.world, outcome.fakes
    never_forgiven = [f"safety: {v}" for v in world.violations]
    if outcome.hang:
        never_forgiven.append(f"hang: {outcome.hang}")

    unmet = list(outcome.notes)
    if outcome.phases != list(expect.phases):
        unmet.append(f"phases {[p.value for p in outcome.phases]}, expected {[p.value for p in expect.phases]}")
    if (outcome.ci_error is not None) != expect.ci_fails:
        unmet.append(f"CI run {'failed: ' + outcome.ci_error if outcome.ci_error else 'did not fail'}")
    unmet += [f"cleanup failed: {e}" for e in outcome.cleanup_errors]
    flags = world.flags_newest_first()
    if expect.flags is not None and (
        len(flags) != len(expect.flags) or not all(e.matches(f) for e, f in zip(expect.flags, flags, strict=False))
    ):
        unmet.append(f"flags {[describe_flag(f) for f in flags]}, expected {[str(e) for e in expect.flags]}")
    if expect.workers is not None and world.worker_versions() != expect.workers:
        unmet.append(f"workers of {sorted(world.worker_versions())} left, expected {sorted(expect.workers)}")
    if expect.running is not None and world.running_by_version() != dict(expect.running):
        unmet.append(f"running {world.running_by_version()}, expected {dict(expect.running)}")
    delivered = sum(world.delivered.values())
    if expect.signalled is not None and delivered != expect.signalled:
        unmet.append(f"{delivered} migrate signals delivered, expected {expect.signalled}")
    called = fakes.called()
    unmet += [f"{name} was never called" for name in sorted(expect.called) if not called[name]]
    unmet += [f"{name} was called {called[name]} times" for name in sorted(expect.not_called) if called[name]]
    for what, test in expect.checks:
        try:
            ok = test(outcome)
        except Exception as error:  # a check that cannot even look is a failed check
            ok, what = False, f"{what} ({type(error).__name__}: {error})"
        if not ok:
            unmet.append(f"expected: {what}")

    if unmet and allow_typed_failure and not never_forgiven:
        reason = explained_by(outcome)
        if reason is not None:
            outcome.typed_failure = reason
            return []
    return never_forgiven + unmet


def explained_by(outcome: Outcome) -> str | None:
    """The typed reason the run failed with, if it is one of the permanent errors the fakes injected."""
    permanent = set(outcome.fakes.permanent_errors())
    if not permanent:
        return None
    reasons = [r.end.text for r in outcome.records if r.phase is Phase.FAILED and r.end and r.end.text]
    reasons += outcome.cleanup_errors
    for reason in reasons:
        if reason.split(":", 1)[0] in permanent:
            return reason
    return None


# ----------------------------------------------------------------------------------------------- running

SIMULATION_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("diachronic.ci.planner")
)
"""The default sandbox, except that the pure planner modules are shared with this process (not re-imported per
workflow run), so that ``recording_decisions`` sees the decisions the workflows take."""

_names_used: set[str] = set()


def _workflow_name(scenario: str, seed: int) -> str:
    """Deterministic (routing buckets depend on workflow ids), unique within this process."""
    name, n = f"{scenario}-s{seed}", 1
    while name in _names_used:
        n += 1
        name = f"{scenario}-s{seed}-{n}"
    _names_used.add(name)
    return name


def _belongs(workflow_id: str, name: str) -> bool:
    _, _, rest = workflow_id.partition(".")
    return rest == name or rest.startswith(f"{name}-")


@functools.cache
def _quiet_runtime() -> Runtime:
    """The SDK core warns on every worker start that the test server lacks a newer capability: errors only."""
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=TelemetryFilter("ERROR", "ERROR"))))


async def time_skipping_server() -> WorkflowEnvironment:
    """A fresh Temporal time-skipping test server (the venv's binary), with the pydantic data converter."""
    return await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(venv_binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
        runtime=_quiet_runtime(),
    )


async def run_scenario(
    scenario: Scenario,
    *,
    env: WorkflowEnvironment | None = None,
    seed: int = 0,
    failures: FailurePolicy | None = None,
    allow_typed_failure: bool = False,
    retry_stalls: bool = True,
) -> Outcome:
    """Run one scenario and judge it, on ``env`` or on a server of its own (the default: 0.1 s to start).

    A server of its own keeps virtual time per scenario and contains two flaws of the Java test server: a child
    workflow that closes after its parent (cleanup does, by design) leaves time skipping locked for everyone
    after, and, rarely (seen under CPU load), a workflow task is lost and its workflow waits forever. A scenario
    that hangs is therefore run once more, from the same seed on a fresh server: a hang of the CI itself hangs
    again and fails; a passing second run is reported with ``retried`` set (``retry_stalls=False`` to never)."""
    if env is not None:
        return await _run(scenario, env, _workflow_name(scenario.name, seed), seed, failures, allow_typed_failure)
    outcome: Outcome | None = None
    for _ in range(2 if retry_stalls else 1):
        own = await time_skipping_server()
        try:
            name = f"{scenario.name}-s{seed}"  # alone on its server: the same ids (and routing) on every run
            again = await _run(scenario, own, name, seed, failures, allow_typed_failure)
        finally:
            await own.shutdown()
        if outcome is not None:
            again.retried = outcome.hang
            again.wall_s += outcome.wall_s
        outcome = again
        if not outcome.hang:
            break
    assert outcome is not None
    return outcome


async def _run(
    scenario: Scenario,
    env: WorkflowEnvironment,
    name: str,
    seed: int,
    failures: FailurePolicy | None,
    allow_typed_failure: bool,
) -> Outcome:
    world = scenario.world(name, seed=seed)
    world.deploying = functools.partial(_deploying, env.client, name)
    policy = failures or FailurePolicy()
    contracts = activity_contracts() | activity_contracts(PIPELINE_ACTIVITIES)
    fakes = ContractFakes(contracts, seed=seed, salt=scenario.name, policy=policy, handlers=world.handlers())
    scenario.setup(world, fakes)
    outcome = Outcome(scenario.name, name, world, fakes)
    task_queue = f"sim-{name}"
    with recording_decisions() as decisions:
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=WORKFLOWS,
            activities=fakes.activities(),
            workflow_runner=SIMULATION_RUNNER,
        ):
            sim = Sim(
                env, task_queue, world, outcome, scenario.max_virtual_s, cleanups_must_end=scenario.cleanups_must_end
            )
            sim.started_at = await sim.now()
            try:
                with contextlib.suppress(ScenarioEnded):
                    await scenario.drive(sim)
                await sim.finish()
            except Hang as hang:
                outcome.hang = str(hang)
                await sim.terminate_all()
            end = sim.ended_at or await sim.now()
            outcome.virtual_s = (end - sim.started_at).total_seconds()
            outcome.wall_s = time.monotonic() - sim.started_wall
    outcome.branches = decisions.branches(lambda workflow_id: _belongs(workflow_id, name))
    outcome.branches |= {f"control.{control}.{answer}" for control, answer in outcome.controls}
    outcome.problems = judge(outcome, scenario.expect, allow_typed_failure=allow_typed_failure)
    return outcome


@dataclass
class Report:
    """A catalog run: each scenario's outcome and the planner branches covered between them."""

    outcomes: list[Outcome]
    branches_total: list[str] = field(default_factory=all_branches)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    @property
    def covered(self) -> set[str]:
        return set().union(*(o.branches for o in self.outcomes)) & set(self.branches_total)

    @property
    def missed(self) -> list[str]:
        return [b for b in self.branches_total if b not in self.covered]

    @property
    def retried(self) -> list[str]:
        """Scenarios whose first run stalled and whose second run did not (a second stall fails the scenario)."""
        return [o.scenario for o in self.outcomes if o.retried and not o.hang]

    def as_json(self) -> dict[str, Any]:
        return {
            "scenarios": [
                {
                    "name": o.scenario,
                    "passed": o.passed,
                    "virtual_s": round(o.virtual_s, 1),
                    "wall_s": round(o.wall_s, 2),
                    **({"retried": o.retried} if o.retried else {}),
                }
                for o in self.outcomes
            ],
            "retried": self.retried,
            "branches_covered": len(self.covered),
            "branches_total": len(self.branches_total),
            "branches_missed": self.missed,
        }


async def run_catalog(
    scenarios: Sequence[Scenario],
    *,
    env: WorkflowEnvironment | None = None,
    seed: int = 0,
    failures: FailurePolicy | None = None,
    allow_typed_failure: bool = False,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> Report:
    """Run scenarios one after the other, each on a server of its own unless ``env`` is given."""
    outcomes = []
    for scenario in scenarios:
        outcome = await run_scenario(
            scenario, env=env, seed=seed, failures=failures, allow_typed_failure=allow_typed_failure
        )
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return Report(outcomes)
