"""Play a story (``diachronic.simulation.actions``) against the real CI workflows on the time-skipping server.

``explored`` turns a story into a catalog ``Scenario``: its world is a ``WatchedWorld``, which tells the referee
(``diachronic.simulation.referee``) every flag read and write, worker deletion and flag archive the automation does,
and lets a person's edit land between the automation's read and its write. Its drive plays the actions one by one,
lets a few virtual seconds pass after each, and asks the referee to look at the world and the CI after every step.

A deployment that does not end is a ``Hang``: the runner plays the story once more on a fresh server (the test
server stalls now and then), and a second hang fails it.

A story is one CI run (with the runs it continues as new into): once that run ends, the rest of the story is not
played (the test server cannot be trusted with time after a run's child outlived it, see docs/simulation.md).
After the last action a patient person settles the story: continues a dark deploy, resumes a paused rollout, and
lets time pass; a deployment nobody interfered with must then end on its own, and any deployment must end once
cancelled. Whatever the story, the CI run must end, and fail if one of its deployments failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.api.testservice.v1 import UnlockTimeSkippingRequest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from diachronic.ci.contracts import (
    ActivityErrorInfo,
    ApplyFlagInput,
    CIInput,
    CIState,
    DeleteWorkersInput,
    Deployment,
    DeploymentObservation,
    FlagList,
    FlagNameInput,
    FlagReading,
    HealthObservation,
    ListFlagsInput,
    ObserveDeploymentInput,
    ObserveHealthInput,
    Phase,
    SetPercentInput,
    cleanup_workflow_id,
    migration_workflow_id,
    rollout_workflow_id,
)
from diachronic.ci.workflow import CIWorkflow
from diachronic.contracts import (
    DEPLOY_SUCCESS_SIGNAL,
    ROLLOUT_CANCEL_SIGNAL,
    ROLLOUT_START_SIGNAL,
    DeployEvent,
    ci_workflow_id,
)
from diachronic.flags import VersionFlag
from diachronic.flags.evaluation import choose, general_percent
from diachronic.simulation.actions import (
    FAILURES,
    Action,
    Archive,
    Break,
    Control,
    Deploy,
    DisableGeneral,
    Fail,
    FinishWorkflows,
    RaceWrite,
    Resend,
    Rollback,
    SetPercent,
    Start,
    StartWorkflows,
    Story,
    Wait,
    WorkersDown,
    WorkersUp,
)
from diachronic.simulation.fakes import Handler, SimulatedFailure
from diachronic.simulation.gate import gate
from diachronic.simulation.referee import ChildView, Referee
from diachronic.simulation.runner import Expect, Hang, Scenario, ScenarioEnded, Sim
from diachronic.simulation.world import Run, World
from diachronic.versions import task_queue
from diachronic.workers import LABEL_VERSION, WorkerSet

__all__ = ["ACTOR", "STEP_S", "WatchedWorld", "explored", "failure_of", "set_up"]

MOVE_S = 30.0
"""Wall seconds one move of a story (an action and the step after it, a look while settling) may take."""
STEP_S = 5.0
"""Virtual seconds that pass after every action, so that the CI acts between two actions."""
SETTLE_STEP_S = 600.0
SETTLE_S = 3 * 3600.0
"""How long a deployment nobody interfered with may take, once the story is over (the longest schedule is 2 h)."""
CANCELLED_S = 1800.0
"""How long a cancelled deployment may take to end."""
MAX_VIRTUAL_S = 7 * 24 * 3600.0
"""A story's bound of virtual time: settling bounds each deployment, this only catches a runaway."""
FINISHING_LOOKS = 40
STALL_S = 3.0
ACTIVITY_ENDS = (
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
)
WORKFLOW_TASK_PENDING = (EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
"""Wall seconds without virtual time moving while we sleep: the test server's clock is stuck (see ``advance``)."""
"""Looks at their queue before the story's finishing workflows end on their own."""


ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("actor", default=None)
"""Who calls the world when no activity does (the model of the CI names the workflow it stands for)."""


def _actor() -> str:
    """The workflow of the automation calling the activity being answered."""
    if (actor := ACTOR.get()) is not None:
        return actor
    if not activity.in_activity():
        return "automation"
    return activity.info().workflow_id or "automation"


@dataclass
class WatchedWorld(World):
    """The fake world, watched by a referee, with a person's hand ready to race the automation's writes."""

    move_delay: int = 0  # a signalled workflow continues as new at the next look: within seconds, not polls
    referee: Referee = field(init=False)
    races: dict[str, int] = field(default_factory=dict)  # version -> percent set right before the next write
    played: int = 0  # actions of the story played (the rest came after the CI run ended)
    inconclusive: str | None = None  # why the story could not be judged (a flaw of the test server)
    unconditional_writes: bool = False  # the old behaviour (defect 2): a percentage write lands whatever was read
    polled: set[str] = field(default_factory=set)  # task queues a worker has polled at some time
    downed: dict[str, str] = field(default_factory=dict)  # task queue -> version: workers gone (a person, a crash)
    _published: int = 0

    def __post_init__(self) -> None:
        self.referee = Referee(self.workflow_name)

    def publish(self) -> None:
        """The referee's findings join the world's, which every scenario is judged on."""
        for violation in self.referee.violations[self._published :]:
            self.violations.append(str(violation))
        self._published = len(self.referee.violations)

    def handlers(self) -> dict[str, Handler]:
        return {
            **super().handlers(),
            "observe_deployment": self._on_observe,
            "list_version_flags": self._on_list,
            "apply_version_flag": self._on_apply,
            "read_version_flag": self._on_read,
            "set_traffic_percent": self._on_set,
            "archive_version_flag": self._on_archive,
            "delete_workers": self._on_delete,
            "observe_health": self._on_health,
        }

    def _on_health(self, input: ObserveHealthInput) -> HealthObservation:
        """The evidence of a broken version makes its abort the automation's to decide: routing it back is no
        ``percent-down``, as a human's abort is not."""
        answer = self.observe_health(input)
        if answer.new.task_problems or answer.new.failed or answer.new.migrated_failed:
            self.referee.abort_accepted(input.flag_name)
        return answer

    def add_workers(self, version_id: str, *, namespace: str = "default") -> WorkerSet:
        worker_set = super().add_workers(version_id, namespace=namespace)
        if worker_set.task_queue is not None:
            self.polled.add(worker_set.task_queue)
            self.downed.pop(worker_set.task_queue, None)
        return worker_set

    def served_queues(self) -> set[str]:
        """The task queues the referee counts as served: those with workers, and those whose workers went away
        outside the CI (``WorkersDown``: workflows stranded there are the outage's, not the automation's)."""
        return {d.task_queue for d in self.deployments.values() if d.task_queue} | set(self.downed)

    def outage_ends(self) -> None:
        """The workers that went away come back (once the story is over: the outage ends)."""
        for version in list(self.downed.values()):
            self.add_workers(version)

    def _unready(self, what: str, queue: str) -> None:
        """Readiness: nothing reaches a version whose task queue no worker ever polled."""
        if queue not in self.polled:
            self.referee.violate("unready-traffic", f"{_actor()} {what} before a worker polled {queue}")
            self.publish()

    def _signal(self, run: Run, to_queue: str) -> None:
        self._unready(f"sent a migrate signal to {run.run_id} for {to_queue}", to_queue)
        super()._signal(run, to_queue)

    def _on_observe(self, input: ObserveDeploymentInput) -> DeploymentObservation:
        answer = self.observe_deployment(input)
        self.referee.saw(_actor(), answer.flags)
        return answer

    def _on_list(self, input: ListFlagsInput) -> FlagList:
        answer = self.list_version_flags(input)
        self.referee.saw(_actor(), answer.flags)
        return answer

    def _on_apply(self, input: ApplyFlagInput) -> VersionFlag:
        queue = task_queue(self.workflow_name, input.version_id)
        self._unready(f"made the flag of {input.version_id} live (its dark strategy routes isTest traffic)", queue)
        flag = self.apply_version_flag(input)
        self.referee.saw(_actor(), [flag])
        return flag

    def _on_read(self, input: FlagNameInput) -> FlagReading:
        answer = self.read_version_flag(input)
        self.referee.saw(_actor(), [answer.flag] if answer.flag is not None else [])
        return answer

    def _on_set(self, input: SetPercentInput) -> BaseModel | None:
        flag = self.flags.get(input.flag_name)
        if flag is not None and not flag.archived:
            version = flag.info.version_id
            if version in self.races and self.flag_of(version) == flag:
                self.hand_set_percent(version, self.races.pop(version))
        before = self.flags.get(input.flag_name)
        if self.unconditional_writes and before is not None:  # the old behaviour: write whatever the flag holds
            input = input.model_copy(update={"expected": general_percent(before)})
        answer = self.set_traffic_percent(input)  # refuses (raises) a write that does not land
        if before is not None:
            self.referee.writing(_actor(), before, input.percent)
            self.publish()
        return answer

    def _on_archive(self, input: FlagNameInput) -> BaseModel | None:
        flags, flag = list(self.flags.values()), self.flags.get(input.flag_name)
        answer = self.archive_version_flag(input)
        if flag is not None:
            self.referee.archiving(_actor(), flags, flag)
            self.publish()
        return answer

    async def _on_delete(self, input: DeleteWorkersInput) -> BaseModel | None:
        current = self.deployments.get(f"{input.worker_set.namespace}/{input.worker_set.name}")
        if current is not None and current.task_queue is not None:
            version = current.labels.get(LABEL_VERSION, "")
            reasons = self.referee.deleting(
                _actor(),
                list(self.flags.values()),
                current.task_queue,
                running=len(self.running_on(current.task_queue)),
                queued=await self.deploying_versions(),
                version=version,
            )
            self.publish()
            if reasons:
                message = f"deleting the workers of {version}: {'; '.join(reasons)}"
                raise SimulatedFailure(ActivityErrorInfo(name="UnsafeDelete", message=message, retryable=False))
        return await self.delete_workers(input)

    def observe(self, queue: str) -> None:
        """Any look at a queue is time passing for every run, looked at or not: a signalled workflow continues as new
        on its new queue within seconds, and a workflow ends when its time comes, whether or not anyone watches."""
        for other in sorted({queue, *(run.task_queue for run in self.runs.values())}):
            super().observe(other)

    # ------------------------------------------------------------------------------------------- people

    def happen(self, action: Action) -> None:
        """What people and workflows do in the world (the actions that need no CI): edits, races, starts, ends."""
        match action:
            case SetPercent(version=version, percent=percent) if self.editable(version):
                self.hand_set_percent(version, percent)
            case RaceWrite(version=version, percent=percent):
                self.races[version] = percent
            case DisableGeneral(version=version, delete=delete) if self.editable(version):
                (self.hand_delete_general if delete else self.hand_disable_general)(version)
            case Archive(version=version) if self.editable(version):
                self.hand_archive(version)
            case StartWorkflows(count=count, version=None, lifetime=lifetime):
                self.start_routed(count, lifetime)
            case StartWorkflows(count=count, version=str(version), lifetime=lifetime):
                if version in self.worker_versions():
                    self.start_workflows(version, count, finishes_after=lifetime)
            case FinishWorkflows(version=version, count=count):
                self.finish_some(version, count)
            case WorkersUp(version=version) if version not in self.worker_versions():
                self.add_workers(version)
            case WorkersDown(version=version) if version in self.worker_versions():
                self.remove_workers(version)
                self.downed[task_queue(self.workflow_name, version)] = version
            case Break(version=version, rule=rule):
                self.break_version(version, rule)

    def edited(self, flag_name: str) -> bool:
        """Whether a person changed the flag (or is about to: a race on its version is pending)."""
        flag = self.flags.get(flag_name)
        racing = flag is not None and flag.info.version_id in self.races
        return racing or any(edit.split(":", 1)[0] == flag_name for edit in self.hand_edits)

    def judge_aborted(self, flag_name: str | None) -> None:
        """A deployment ended aborted: the referee judges its new version's flag as it is now."""
        flag = self.flags.get(flag_name) if flag_name is not None else None
        self.referee.ended_aborted(flag, edited=flag_name is not None and self.edited(flag_name))

    def editable(self, version: str) -> bool:
        """Whether a person can edit the version's newest flag (it exists and is not archived)."""
        flag = self.flag_of(version)
        return flag is not None and not flag.archived

    def start_routed(self, count: int, lifetime: int | None) -> None:
        """Workflows started where the flags route them, as the signaler starts them (none when nothing routes)."""
        live = self.flags_newest_first(include_archived=False)
        for _ in range(count):
            chosen = choose(live, f"{self.workflow_name}-wf{self._started}", False)
            if chosen is None:
                return
            self.start_workflows(chosen.info.version_id, 1, finishes_after=lifetime)

    def finish_some(self, version_id: str, count: int | None) -> None:
        """``count`` (or all) workflows on the version's queue end."""
        for run in self.running_on(task_queue(self.workflow_name, version_id))[:count]:
            self._close(run)


def failure_of(action: Fail) -> ActivityErrorInfo:
    """The error a ``Fail`` action's incident raises."""
    error, retryable, _ = FAILURES[action.failure]
    return ActivityErrorInfo(name=error, message=f"{action.failure} (simulated)", retryable=retryable)


# ----------------------------------------------------------------------------------------------- playing


def set_up(start: Start, world: World) -> None:
    """The world before the story: versions deployed earlier, the live one's workers and workflows."""
    for version in start.live[:-1]:
        world.add_version(version, archived=True)
    if start.live:
        live = start.live[-1]
        world.add_version(live, percent=100)
        world.add_workers(live)
        world.start_workflows(live, start.running - start.finishing)
        world.start_workflows(live, start.finishing, finishes_after=FINISHING_LOOKS)


@dataclass
class _Player:
    """Plays one story through a ``Sim`` and keeps what the referee needs between steps."""

    sim: Sim
    world: WatchedWorld
    start: Start
    sent: dict[str, DeployEvent] = field(default_factory=dict)  # the last deploy event of each version
    started: bool = False  # a deploy reached the CI: the story's CI run exists
    gates: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)  # the gate workers
    gated: set[str] = field(default_factory=set)  # versions whose gate workflow a worker serves
    judged: set[datetime] = field(default_factory=set)  # aborted deployments judged (by when they started)
    over: bool = False  # the CI run ended (or was ended by the player)

    @property
    def ci(self) -> Any:
        return self.sim.client.get_workflow_handle(ci_workflow_id(self.world.workflow_name))

    async def play(self, actions: Sequence[Action]) -> None:
        async with self.gates:
            for action in actions:
                if self.over:
                    return
                async with self._bounded(f"playing {action}"):
                    await self.act(action)
                    self.world.played += 1
                    await self.step(STEP_S)
            await self.settle()

    @contextlib.asynccontextmanager
    async def _bounded(self, what: str) -> AsyncIterator[None]:
        """Bound a move by wall time: the CI answers an update or a query only once a worker has run its workflow
        task, so a CI that cannot get one done would hold the story forever. That is a ``Hang``."""
        bound = asyncio.timeout(MOVE_S)
        try:
            async with bound:
                yield
        except Exception:  # the SDK may turn the cancellation into its own error (an update's RPC cancelled)
            if bound.expired():
                raise Hang(f"{what} took more than {MOVE_S:.0f} wall s{await self._stuck()}") from None
            raise

    async def _stuck(self) -> str:
        """Why the CI may be stuck: the test server refuses a second cancellation of one child id in a run
        (``RequestCancelExternalWorkflowExecution``: "cancellation already requested") and rejects the completion
        of the CI's workflow task that asks for it, again and again. A real server accepts it. Seen as: the run
        already asked a child to stop, and its last workflow task never completed (not failed: our workflow code
        would have said so). The story is then inconclusive (``WatchedWorld.inconclusive``), not a counter-example."""
        try:
            events = [e.event_type async for e in self.ci.fetch_history_events()]
        except RPCError:
            return ""
        asked_before = EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED in events
        if asked_before and events and events[-1] in WORKFLOW_TASK_PENDING:
            self.world.inconclusive = (
                "the test server rejected the CI's workflow task (a second cancellation of one child id in a run), "
                "which a real server accepts"
            )
            return f": {self.world.inconclusive}"
        return ""

    # ------------------------------------------------------------------------------------------- actions

    async def act(self, action: Action) -> None:
        world = self.world
        match action:
            case Deploy():
                await self.deploy(action)
            case Resend(version=version) if version in self.sent and self.started:
                payload = self.sent[version].model_dump(mode="json", by_alias=True)
                with contextlib.suppress(RPCError):  # the CI run may have just ended
                    await self.ci.signal(DEPLOY_SUCCESS_SIGNAL, payload)
            case Control():
                await self.control(action)
            case Rollback(steps=steps) if self.started:
                current = (await self.state()).current
                if await self.sim.rollback(steps=steps) and current and current.to_version:
                    self.world.referee.abort_accepted(current.to_version.flag_name)
            case Fail(activity=name, count=count):
                self.sim.outcome.fakes.fail_next(name, *[failure_of(action)] * count)
            case Wait(seconds=seconds):
                await self.step(seconds)
            case _:
                world.happen(action)

    async def deploy(self, action: Deploy) -> None:
        if action.workers == "up" and action.version not in self.world.worker_versions():
            self.world.add_workers(action.version)  # the deploy event came once the version's workers were up
        if action.gate is not None and action.version not in self.gated:
            await self.gates.enter_async_context(self.sim.gate_worker(action.version))
            self.gated.add(action.version)
        ci_input = None if self.start.ci_history is None else CIInput(continue_as_new_after=self.start.ci_history)
        await self.sim.deploy(
            action.version,
            dark=action.kind == "dark",
            non_migratory=action.kind == "non-migratory",
            steps=action.steps,
            poll_s=action.poll_s,
            batch_size=action.batch_size,
            continue_as_new_after=self.start.child_history,
            ci_input=ci_input,
            canary=action.canary_options,
            gate=gate(fails=action.gate == "fail", every_step=action.gate_every_step) if action.gate else None,
            while_running=False,
        )
        self.started = True
        state = await self.state()
        records = [*state.history, *([state.current] if state.current else [])]
        events = [*(r.request.event for r in records), *(r.event for r in state.queue)]
        mine = [e for e in events if e.version_id == action.version]
        if mine:
            self.sent[action.version] = max(mine, key=lambda e: e.event_time)

    async def control(self, action: Control) -> None:
        if not self.started:
            return
        if action.via_signal and action.name in ("continue", "cancel"):
            signal = ROLLOUT_START_SIGNAL if action.name == "continue" else ROLLOUT_CANCEL_SIGNAL
            with contextlib.suppress(RPCError):
                await self.ci.signal(signal, None)
            return
        current = (await self.state()).current
        if await self.sim.control(action.name) and action.name == "abort" and current and current.to_version:
            self.world.referee.abort_accepted(current.to_version.flag_name)

    # ------------------------------------------------------------------------------------------- between steps

    async def state(self) -> CIState:
        """The CI's state (empty before the story deployed anything)."""
        if not self.started:
            return CIState()
        state: CIState = await self.ci.query(CIWorkflow.db)
        return state

    async def step(self, seconds: float) -> None:
        """Let time pass, then look: at the end of the CI run, or at the world and the CI's children."""
        with contextlib.suppress(ScenarioEnded):
            await self.advance(seconds)
        if await self.sim.out_of_time():
            raise Hang(f"the story took more than its bound of time ({await self.sim.elapsed():.0f} virtual s)")
        if self.started and await self.sim.ci_ended():
            await self.ended()
            return
        await self.look()

    async def advance(self, seconds: float) -> None:
        """``Sim.advance``, minding the test server's clock. When a child's event reaches a CI run that already
        continued as new, the server keeps a time-skipping lock for a workflow task that never comes, and virtual time
        only crawls at wall speed. A clock that has not skipped ahead for ``STALL_S`` while every workflow of the
        story is idle (no workflow task, no activity running) has that stray lock released."""
        sleeping = asyncio.ensure_future(self.sim.advance(seconds))
        since, virtual_since = time.monotonic(), await self.sim.now()
        while not sleeping.done():
            await asyncio.wait({sleeping}, timeout=STALL_S / 4)
            if sleeping.done():
                break
            now = await self.sim.now()
            crawled = (now - virtual_since).total_seconds() < 2 * (time.monotonic() - since)
            if not crawled:
                since, virtual_since = time.monotonic(), now
            elif time.monotonic() - since > STALL_S and await self._idle():
                with contextlib.suppress(RPCError):  # refused when nothing holds a lock: then it was not that
                    await self.sim.client.test_service.unlock_time_skipping(UnlockTimeSkippingRequest())
                since, virtual_since = time.monotonic(), now
        sleeping.result()

    async def _idle(self) -> bool:
        """Whether no workflow of the story has a workflow task pending or an activity in flight (by its history)."""
        name = self.world.workflow_name
        versions = {f.info.version_id for f in self.world.flags.values()}
        ids = [ci_workflow_id(name), rollout_workflow_id(name), migration_workflow_id(name)]
        ids += [cleanup_workflow_id(task_queue(name, v)) for v in versions]
        for workflow_id in ids:
            handle = self.sim.client.get_workflow_handle(workflow_id)
            try:
                if (await handle.describe()).status is not WorkflowExecutionStatus.RUNNING:
                    continue
                events = [e.event_type async for e in handle.fetch_history_events()]
            except RPCError:
                continue
            in_flight = events.count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) - sum(
                events.count(e) for e in ACTIVITY_ENDS
            )
            if in_flight > 0 or (events and events[-1] in WORKFLOW_TASK_PENDING):
                return False
        return True

    async def look(self) -> None:
        state = await self.state()  # first the CI, then its children: a child seen after is no older than it
        self.world.queued = [r.event.version_id for r in state.queue]
        children = await self._children()
        world = self.world
        latest = state.current or (state.history[-1] if state.history else None)
        self._judge_aborts(state)
        running: dict[str, int] = {}
        for run in world.runs.values():
            running[run.task_queue] = running.get(run.task_queue, 0) + 1
        world.referee.after_step(
            running_queues=running,
            worker_queues=world.served_queues(),
            delivered=world.delivered,
            current_started_at=state.current.started_at if state.current else None,
            latest_started_at=latest.started_at if latest else None,
            children=[c for c in children if c is not None],
            now=await self.sim.now(),
        )
        world.publish()

    def _judge_aborts(self, state: CIState) -> None:
        """Each deployment newly ended aborted is judged once, unless a later deployment of its version began (it
        may raise that flag again)."""
        records = [*state.history, *([state.current] if state.current else [])]
        for index, record in enumerate(state.history):
            if record.phase is not Phase.ABORTED or record.started_at is None or record.started_at in self.judged:
                continue
            self.judged.add(record.started_at)
            version = record.request.event.version_id
            if any(r.request.event.version_id == version for r in records[index + 1 :]):
                continue
            self.world.judge_aborted(record.to_version.flag_name if record.to_version else None)

    async def _children(self) -> list[ChildView]:
        """The rollout and the migration as Temporal describes them; once one failed, when the CI asked each to stop
        (its history's last cancellation request of that child)."""
        children = []
        for workflow_id in (
            rollout_workflow_id(self.world.workflow_name),
            migration_workflow_id(self.world.workflow_name),
        ):
            try:
                description = await self.sim.client.get_workflow_handle(workflow_id).describe()
            except RPCError:
                continue
            failed = description.status is WorkflowExecutionStatus.FAILED
            children.append(ChildView(workflow_id, description.start_time, description.close_time, failed))
        if any(c.failed for c in children):
            children = [await self._stop_requested(c) for c in children]
        return children

    async def _stop_requested(self, child: ChildView) -> ChildView:
        """The child, with when the CI run that started it last asked it to stop (a cancellation request)."""
        handle = self.sim.client.get_workflow_handle(child.workflow_id)
        async for event in handle.fetch_history_events():  # the first event names the parent run
            parent = event.workflow_execution_started_event_attributes.parent_workflow_execution.run_id
            break
        else:
            return child
        stop: datetime | None = None
        async for event in self.sim.client.get_workflow_handle(self.ci.id, run_id=parent).fetch_history_events():
            if event.HasField("request_cancel_external_workflow_execution_initiated_event_attributes"):
                attributes = event.request_cancel_external_workflow_execution_initiated_event_attributes
                if attributes.workflow_execution.workflow_id == child.workflow_id:
                    stop = event.event_time.ToDatetime(tzinfo=UTC)
        return replace(child, stop_requested_at=stop) if stop is not None and stop >= child.started_at else child

    async def ended(self) -> None:
        """The story's CI run ended: it must have failed if a deployment of it failed (and its children ended)."""
        self.over = True
        await self.look()
        description = await self.ci.describe()
        state: CIState = await self.ci.query(CIWorkflow.db)
        failed = [
            f"{r.request.event.version_id}: {r.end and r.end.text}" for r in state.history if r.phase is Phase.FAILED
        ]
        completed = description.status is WorkflowExecutionStatus.COMPLETED
        self.world.referee.chain_ended(failed_run=not completed, failed_deployments=failed)
        self.world.publish()

    # ------------------------------------------------------------------------------------------- settling

    async def settle(self) -> None:
        """After the story: the outage ends, a patient person lets every deployment end (see the module docstring)."""
        self.world.outage_ends()
        while self.started and not self.over:
            async with self._bounded("settling"):
                current = (await self.state()).current
                if current is None:
                    await self.step(STEP_S)  # between two deployments, or about to complete
                    continue
            await self.settle_one(current)

    async def settle_one(self, deployment: Deployment) -> None:
        began = await self.sim.now()
        cancelled_at: datetime | None = None
        while not self.over:
            async with self._bounded(f"settling {self._name(deployment)}"):
                current = (await self.state()).current
                if current is None or current.started_at != deployment.started_at:
                    return
                if current.phase is Phase.AWAITING_CONTINUE:
                    await self.sim.control("continue")
                elif current.phase is Phase.ROLLING_OUT and (rollout := await self.sim.rollout()) and rollout.paused:
                    await self.sim.control("resume")
                waited = (await self.sim.now() - (cancelled_at or began)).total_seconds()
                if cancelled_at is None and waited > SETTLE_S:
                    if not self._interfered(current):
                        raise Hang(f"{self._name(current)} did not end in {waited:.0f} virtual s, nobody interfering")
                    await self.sim.control("cancel")  # the person gives up on their own edit
                    cancelled_at = await self.sim.now()
                elif cancelled_at is not None and waited > CANCELLED_S:
                    raise Hang(f"{self._name(current)} did not end in {waited:.0f} virtual s once cancelled")
                await self.step(SETTLE_STEP_S)

    def _interfered(self, deployment: Deployment) -> bool:
        """Whether a person changed the flags this deployment moves traffic between."""
        names = {v.flag_name for v in (deployment.to_version, deployment.from_version) if v is not None}
        return any(edit.split(":", 1)[0] in names for edit in self.world.hand_edits)

    @staticmethod
    def _name(deployment: Deployment) -> str:
        return f"the deployment of {deployment.request.event.version_id}"


async def _play(story: Story, sim: Sim) -> None:
    if not isinstance(sim.world, WatchedWorld):
        raise TypeError("a story plays in a WatchedWorld: build its scenario with explored()")
    await _Player(sim, sim.world, story.start).play(story.actions)


def explored(
    name: str,
    about: str,
    start: Start,
    actions: Sequence[Action],
    *,
    phases: tuple[Phase, ...] = (),
    ci_fails: bool = False,
) -> Scenario:
    """A story as a catalog scenario: judged by the referee (every invariant, after every step), by ``phases``, each
    deployment's final phase, and by whether the CI run fails."""
    story = Story(start, tuple(actions))
    return Scenario(
        name=name,
        about=about,
        setup=lambda world, fakes: set_up(start, world),
        drive=partial(_play, story),
        expect=Expect(phases=phases, ci_fails=ci_fails),
        max_virtual_s=MAX_VIRTUAL_S,
        world=WatchedWorld,
        cleanups_must_end=False,
    )
