"""The explorer's second mode: the same stories, played against a model of the CI that is the planner alone.

``run_model(story, name)`` plays a story (``diachronic.simulation.actions``) in a few milliseconds: no Temporal
server, no workflow, only the decisions of ``diachronic.ci.planner``, executed against the simulation's
``WatchedWorld`` (whose referee watches every read, write, archive and deletion) in virtual time:

- a deploy arriving: ``deploy.classify_deploy``; the deployment's start, one at a time: ``deployment.plan_start``
  (a redeploy of a recently live version, ``rollback.plan_redeploy``, migrates nothing),
  then ``readiness.plan_readiness`` (waiting for a worker on the new queue) and the gate's ``gate.judge_gate``;
- the rollout: ``rollout.plan_rollout`` (its writes conditional on the value read, a person's edit possibly landing
  between the read and the write), waking when the plan says;
- the migration: ``canary.look`` (a canary cohort: cohort, soak, rest), ``sweep.next_sweep`` over the running
  count and the flags, the world's ``migrate_sweep`` (which selects with ``migration.select_runs``) folded in by
  ``sweep.record_progress`` (and ``canary.record_cohort``), then ``retire.plan_retire`` and ``migration.after_drain``;
- cleanup of a non-migratory deployment's previous version: ``retire.plan_retire``, on its own;
- the health child: ``health.judge_health`` over the world's evidence each poll, a breach aborting the deployment;
- how the children end, and controls: ``deployment.plan_children``, an abort's or a roll-back's
  ``deployment.plan_route_back`` down ``rollback.rollback_steps``;
- the CI run's end: ``deployment.run_failure``.

What the model leaves out is what the workflows add around those decisions: continue-as-new, activity retries and
their budgets (a retryable failure is simply tried again a little later), the wiring of signals, updates and
children. Mode (a) plays the same stories on the real workflows; a story the model finds breaking an invariant is
played there too, to tell a planner's defect from a shortcut of the model (``explore(model=True)``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TypeVar

from pydantic import BaseModel

from diachronic.ci.contracts import (
    DEFAULT_READY_TIMEOUT_S,
    FINAL_PHASES,
    MIGRATION_BATCH_SIZE,
    MIGRATION_PAGES_PER_CALL,
    ActivityErrorInfo,
    ApplyFlagInput,
    CanaryOptions,
    CanaryPhase,
    CanaryProgress,
    Control,
    CountRunningInput,
    DeleteWorkersInput,
    Deployment,
    DeploymentEnd,
    DeploymentObservation,
    DeployRequest,
    FindWorkersInput,
    FlagList,
    FlagNameInput,
    FlagReading,
    HealthObservation,
    HealthThresholds,
    ListFlagsInput,
    MigrationInput,
    ObserveDeploymentInput,
    ObserveHealthInput,
    ObserveWorkersInput,
    Phase,
    RunningCount,
    SetPercentInput,
    SweepInput,
    WorkerSetList,
    WorkersObservation,
    cleanup_workflow_id,
    health_workflow_id,
    migration_workflow_id,
    rollout_workflow_id,
)
from diachronic.ci.planner import (
    canary,
    deploy,
    deployment,
    gate,
    health,
    migration,
    readiness,
    retire,
    rollback,
    rollout,
    sweep,
)
from diachronic.ci.planner.health import HEALTH_CHECK_FAILED
from diachronic.ci.planner.schedule import parse_steps
from diachronic.contracts import DeployEvent, RolloutStep, VersionInfo
from diachronic.flags import VersionFlag
from diachronic.simulation import actions as act
from diachronic.simulation.fakes import SimulatedFailure
from diachronic.simulation.gate import GATE_ERROR
from diachronic.simulation.gate import gate as gate_options
from diachronic.simulation.referee import ChildView, Violation
from diachronic.simulation.stories import (
    ACTOR,
    CANCELLED_S,
    SETTLE_S,
    SETTLE_STEP_S,
    STEP_S,
    WatchedWorld,
    failure_of,
    set_up,
)
from diachronic.simulation.world import World
from diachronic.versions import task_queue

__all__ = ["ModelRun", "run_model"]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RETRY_S = 2.0  # a retryable failure: the call is made again this much later


class _Failed(Exception):
    """A call failed for good (a permanent error): the step, and its workflow, fail with this reason."""

    def __init__(self, info: ActivityErrorInfo) -> None:
        super().__init__(f"{info.name}: {info.message}")
        self.info = info


class _Retry(Exception):
    """A call failed and may succeed later: the workflow's move is made again ``RETRY_S`` later."""


@dataclass
class _Child:
    """A child of the deployment (rollout or migration) or a cleanup: when it moves next, and how it ended."""

    workflow_id: str
    started_at: datetime
    wake: datetime | None  # None: it ended
    view: deployment.ChildView = deployment.RUNNING
    closed_at: datetime | None = None
    stop_requested_at: datetime | None = None

    def end(self, view: deployment.ChildView, now: datetime) -> None:
        self.view, self.wake, self.closed_at = view, None, now

    def as_seen(self) -> ChildView:
        failed = self.view.state is deployment.ChildState.FAILED
        return ChildView(self.workflow_id, self.started_at, self.closed_at, failed, self.stop_requested_at)


@dataclass
class _Deployment:
    event: DeployEvent
    action: act.Deploy
    steps: tuple[RolloutStep, ...]
    poll_s: float
    batch_size: int
    started_at: datetime
    phase: Phase = Phase.PREPARING
    new: VersionInfo | None = None
    previous: VersionInfo | None = None
    roller: _Child | None = None  # the rollout child
    state: rollout.RolloutSnapshot | None = None  # the rollout's state (its observation and clock refreshed)
    migrator: _Child | None = None  # the migration child
    sweeping: sweep.Sweep | None = None  # the migration's sweep in progress
    sweep_log: sweep.SweepLog = field(default_factory=sweep.SweepLog)
    stop: Control | None = None
    canary: CanaryOptions | None = None  # deploy --migrate-canary
    cohort: CanaryProgress | None = None  # what the migration carries of its canary cohort
    newest_live: str | None = None  # the newest live version when it started (a redeploy's roll-back is judged on it)
    ready_wake: datetime | None = None  # waiting for a worker on the new queue: the next look
    health: _Child | None = None  # the health child
    rollback: tuple[RolloutStep, ...] | None = None  # ``rollback --steps``: the way back (None: at once)
    ending: deployment.ChildrenPlan | None = None  # how it ends, once decided (a stepped route-back takes time)
    back: list[RolloutStep] = field(default_factory=list)  # route-back steps still to write
    back_wake: datetime | None = None  # when the next route-back step is written


@dataclass(frozen=True)
class ModelRun:
    """One story played against the model: what the referee found, and how the deployments ended."""

    violations: list[Violation]
    played: int
    phases: list[Phase]
    ci_failed: bool
    world: WatchedWorld  # as the story left it


class _Model:
    """The CI, as the planner decides it, over a watched world."""

    def __init__(self, world: WatchedWorld) -> None:
        self.world = world
        self.now = T0
        self.queue: list[act.Deploy] = []
        self.events: dict[str, DeployEvent] = {}  # the last deploy event of each version
        self.deployed: list[deploy.Seen] = []
        self.history: list[Deployment] = []  # the deployments ended, as the CI records them
        self.current: _Deployment | None = None
        self.cleanups: list[tuple[VersionInfo, _Child, float]] = []  # the old version, the cleanup, its poll
        self.phases: list[Phase] = []
        self.failures: list[str] = []
        self.failing: dict[str, list[ActivityErrorInfo]] = {}

    # ------------------------------------------------------------------------------------------- calls

    def call(self, actor: str, activity: str, input: BaseModel) -> BaseModel | None:
        """An activity of ``actor`` answered by the world, unless a failure is due (``_Retry``, ``_Failed``)."""
        if burst := self.failing.get(activity):
            info = burst.pop(0)
            if info.retryable:
                raise _Retry(info.message)
            raise _Failed(info)
        token = ACTOR.set(actor)
        try:
            answer = self.world.handlers()[activity](input)
            return _without_waiting(answer) if isinstance(answer, Awaitable) else answer
        except SimulatedFailure as refused:
            if refused.info.retryable:
                raise _Retry(refused.info.message) from None
            raise _Failed(refused.info) from None
        finally:
            ACTOR.reset(token)

    def ask(self, actor: str, activity: str, input: BaseModel, answer: type[M]) -> M:
        result = self.call(actor, activity, input)
        if not isinstance(result, answer):
            raise TypeError(f"{activity} answered {result!r}, not a {answer.__name__}")
        return result

    # ------------------------------------------------------------------------------------------- actions

    def happen(self, action: act.Action) -> None:
        world = self.world
        match action:
            case act.Deploy(version=version, workers=workers):
                if workers == "up" and version not in world.worker_versions():
                    world.add_workers(version)
                self.arrive(action, None)
            case act.Rollback(steps=steps):
                self.control(Control.ROLLBACK, tuple(parse_steps(steps)) if steps else None)
            case act.Resend(version=version) if version in self.events:
                self.arrive(None, self.events[version])
            case act.Control(name=name):
                self.control(Control(name))
            case act.Fail(activity=name, count=count):
                self.failing.setdefault(name, []).extend([failure_of(action)] * count)
            case act.Wait(seconds=seconds):
                self.advance(seconds)
            case _:
                world.happen(action)

    def arrive(self, action: act.Deploy | None, resent: DeployEvent | None) -> None:
        """A deploy event arrives: queued, or recognised as a duplicate or a stale event."""
        if action is not None:
            event = DeployEvent(
                workflow_name=self.world.workflow_name,
                version_id=action.version,
                sha=action.version,
                environment=self.world.environment,
                event_time=self.now,
                is_dark_deploy=action.kind == "dark",
                is_non_migratory=action.kind == "non-migratory",
            )
        else:
            assert resent is not None
            event = resent
        current = self.current
        snapshot = deploy.QueueSnapshot(
            ci_workflow_name=self.world.workflow_name,
            current=deploy.Seen(current.event.version_id, current.event.event_time) if current else None,
            queued=tuple(deploy.Seen(d.version, self.events[d.version].event_time) for d in self.queue),
            deployed=tuple(self.deployed),
        )
        if not deploy.classify_deploy(snapshot, event).accepted:
            return
        self.events[event.version_id] = event
        self.queue.append(action or act.Deploy(event.version_id))
        self.world.queued = [d.version for d in self.queue]
        self.next_deployment()

    def control(self, control: Control, steps: tuple[RolloutStep, ...] | None = None) -> None:
        current = self.current
        if current is None or current.ending is not None:
            return
        if control is Control.CONTINUE and current.phase is Phase.AWAITING_CONTINUE:
            self.roll_out(current)
        elif control in (Control.CANCEL, Control.ABORT, Control.ROLLBACK) and current.phase not in FINAL_PHASES:
            if control in (Control.ABORT, Control.ROLLBACK):
                if current.previous is None or current.phase not in rollback.ROLLBACK_PHASES:
                    return  # refused, as the CI's validators refuse it
                if current.new is not None:
                    self.world.referee.abort_accepted(current.new.flag_name)
            current.stop, current.rollback = control, steps
            self.children_move(current)
        elif control in (Control.PAUSE, Control.RESUME, Control.PROMOTE) and current.state is not None:
            if current.roller is None or current.roller.wake is None:
                return
            state = current.state
            current.state = replace(
                state,
                paused=control is Control.PAUSE or (state.paused and control is not Control.RESUME),
                resumed_at=self.now if control is Control.RESUME and state.paused else state.resumed_at,
                promote=state.promote or control is Control.PROMOTE,
            )
            current.roller.wake = self.now

    # ------------------------------------------------------------------------------------------- time

    def advance(self, seconds: float) -> None:
        """Virtual time passes; every workflow moves when it is due."""
        until = self.now + timedelta(seconds=seconds)
        while (due := self._next_due()) is not None and due[0] <= until:
            self.now = max(self.now, due[0])
            due[1]()
        self.now = until

    def _next_due(self) -> tuple[datetime, Callable[[], None]] | None:
        moves: list[tuple[datetime, Callable[[], None]]] = []
        current = self.current
        if current is not None:
            if current.ready_wake is not None:
                moves.append((current.ready_wake, lambda: self.prepare(current)))
            if current.back_wake is not None:
                moves.append((current.back_wake, lambda: self.back_move(current)))
            if current.health is not None and current.health.wake is not None:
                moves.append((current.health.wake, lambda: self.health_move(current)))
            if current.roller is not None and current.roller.wake is not None:
                moves.append((current.roller.wake, lambda: self.rollout_move(current)))
            if current.migrator is not None and current.migrator.wake is not None:
                moves.append((current.migrator.wake, lambda: self.migration_move(current)))
        for old, child, poll_s in self.cleanups:
            if child.wake is not None:
                moves.append((child.wake, partial(self.cleanup_move, old, child, poll_s)))
        return min(moves, key=lambda m: m[0]) if moves else None

    # ------------------------------------------------------------------------------------------- deployments

    def next_deployment(self) -> None:
        if self.current is not None or not self.queue:
            return
        action = self.queue.pop(0)
        self.world.queued = [d.version for d in self.queue]
        event = self.events[action.version]
        record = _Deployment(
            event,
            action,
            steps=tuple(parse_steps(action.steps)),
            poll_s=action.poll_s,
            batch_size=action.batch_size or MIGRATION_BATCH_SIZE,
            started_at=self.now,
            canary=action.canary_options,
        )
        self.current = record
        ci = f"ci.{self.world.workflow_name}"
        try:
            observe = ObserveDeploymentInput(workflow_name=event.workflow_name, version_id=event.version_id)
            observed = self.ask(ci, "observe_deployment", observe, DeploymentObservation)
            start = deployment.plan_start(
                deployment.DeploymentSnapshot(event, tuple(observed.flags), observed.environment)
            )
            record.previous = start.previous
            record.newest_live = next((f.info.version_id for f in observed.flags if not f.archived), None)
            if start.verdict is deployment.StartVerdict.REFUSE:
                return self.end(record, Phase.FAILED, DeploymentEnd(reason=start.refusal and start.refusal.value))
            if start.verdict is deployment.StartVerdict.DUPLICATE:
                return self.end(record, Phase.DUPLICATE, DeploymentEnd())
        except (_Failed, _Retry) as failure:  # a retried step would end the same way in the model: failed
            return self.end(record, Phase.FAILED, DeploymentEnd(reason=str(failure)))
        self.prepare(record)

    def prepare(self, record: _Deployment) -> None:
        """Readiness (a look at the new queue's pollers, again until the plan proceeds or fails), then the gate before
        the first step, then the version's flag: as the CI's ``_gates_before_traffic``."""
        event, ci = record.event, f"ci.{self.world.workflow_name}"
        record.ready_wake = None
        try:
            look = ObserveWorkersInput(task_queue=task_queue(event.workflow_name, event.version_id))
            observed = self.ask(ci, "observe_workers", look, WorkersObservation)
            ready = readiness.plan_readiness(
                readiness.ReadinessSnapshot(
                    task_queue=look.task_queue,
                    pollers=observed.pollers,
                    waiting_since=record.started_at,
                    now=self.now,
                    timeout_s=DEFAULT_READY_TIMEOUT_S,
                    poll_interval_s=record.poll_s,
                )
            )
            if ready.action is readiness.ReadinessAction.WAIT:
                record.ready_wake = ready.wake_at
                return
            if ready.action is readiness.ReadinessAction.FAIL:
                reason = DeploymentEnd(reason=readiness.WORKERS_NOT_READY, detail=ready.detail)
                return self.end(record, Phase.FAILED, reason)
            if (verdict := self.gate(record, 0)) is not None:
                return self.end(record, Phase.ABORTED, DeploymentEnd(reason=verdict.reason, detail=verdict.detail))
            apply = ApplyFlagInput(workflow_name=event.workflow_name, version_id=event.version_id)
            flag = self.ask(ci, "apply_version_flag", apply, VersionFlag)
        except (_Failed, _Retry) as failure:  # a retried step would end the same way in the model: failed
            return self.end(record, Phase.FAILED, DeploymentEnd(reason=str(failure)))
        record.new = flag.info
        if event.is_dark_deploy:
            record.phase = Phase.AWAITING_CONTINUE
        else:
            self.roll_out(record)

    def roll_out(self, record: _Deployment) -> None:
        """The initial one-step rollout inline, or the rollout and migration children."""
        assert record.new is not None
        record.phase = Phase.ROLLING_OUT
        steps = record.steps if record.previous is not None else rollout.INITIAL_STEPS
        redeploy = rollback.RedeployPlan(rollback=False)
        if record.previous is not None:  # a story's deploy always gives its steps
            version, newest = record.event.version_id, record.newest_live
            redeploy = rollback.plan_redeploy(
                version, history=self.history, newest_live=newest, now=self.now, steps_given=True
            )
        every_step = record.action.gate is not None and record.action.gate_every_step and record.previous is not None
        record.state = rollout.RolloutSnapshot(
            steps, rollout.TrafficObservation(None), self.now, record.poll_s, gate_every_step=every_step
        )
        name = self.world.workflow_name
        record.roller = _Child(rollout_workflow_id(name), self.now, wake=self.now)
        if record.previous is not None:
            record.health = _Child(health_workflow_id(name), self.now, wake=self.now)
        if record.previous is not None and not record.event.is_non_migratory and not redeploy.rollback:
            record.migrator = _Child(migration_workflow_id(name), self.now, wake=self.now)
        self.rollout_move(record)

    @staticmethod
    def gate(record: _Deployment, step_index: int) -> DeploymentEnd | None:
        """The deploy's gate before ``step_index``, if one is due: None when it passed, else why it aborts."""
        verdict = record.action.gate
        if verdict is None:
            return None
        options = gate_options(fails=verdict == "fail", every_step=record.action.gate_every_step)
        if not gate.gate_due(options, step_index):
            return None
        outcome = gate.GateOutcome(succeeded=verdict == "pass", error=GATE_ERROR)
        plan = gate.judge_gate(options, step_index, outcome)
        if plan.action is gate.GateAction.PROCEED:
            return None
        assert plan.reason is not None
        return DeploymentEnd(reason=plan.reason.value, detail=plan.detail)

    def health_move(self, record: _Deployment) -> None:
        """One look of the health child at both versions' evidence; a breach ends it aborted."""
        child, new, old = record.health, record.new, record.previous
        assert child is not None and new is not None and old is not None
        look = ObserveHealthInput(
            workflow_name=self.world.workflow_name,
            new_task_queue=new.task_queue,
            old_task_queue=old.task_queue,
            flag_name=new.flag_name,
            since=child.started_at,
        )
        try:
            observed = self.ask(child.workflow_id, "observe_health", look, HealthObservation)
        except _Retry:
            child.wake = self.now + timedelta(seconds=RETRY_S)
            return
        except _Failed as failure:
            child.end(
                deployment.ChildView(deployment.ChildState.FAILED, failure.info.name, failure.info.message), self.now
            )
            return self.children_move(record)
        verdict = health.judge_health(observed, HealthThresholds(), self.now)
        if verdict.rule is None:
            child.wake = self.now + timedelta(seconds=record.poll_s)
            return
        detail = f"{verdict.rule}: {verdict.detail}"
        child.end(deployment.ChildView(deployment.ChildState.ABORTED, HEALTH_CHECK_FAILED, detail), self.now)
        self.children_move(record)

    def rollout_move(self, record: _Deployment) -> None:
        """The rollout looks at its flag and does what the planner says (the initial deployment as the CI)."""
        child, state, new = record.roller, record.state, record.new
        assert child is not None and state is not None and new is not None
        actor = child.workflow_id if record.previous is not None else f"ci.{self.world.workflow_name}"
        try:
            look = FlagNameInput(flag_name=new.flag_name, workflow_name=self.world.workflow_name)
            reading = self.ask(actor, "read_version_flag", look, FlagReading)
            state = replace(state, observed=rollout.observe_flag(reading.flag), now=self.now)
            plan = rollout.plan_rollout(state)
            if plan.action is rollout.RolloutAction.START:
                assert plan.percent is not None and plan.step_index is not None
                state = replace(state, started=True, percent=plan.percent, step_index=plan.step_index)
                state = replace(state, step_started_at=self.now, gated_through=plan.step_index)
                child.wake = self.now
            elif plan.action is rollout.RolloutAction.GATE:
                assert plan.step_index is not None
                if (verdict := self.gate(record, plan.step_index)) is not None:
                    aborted = deployment.ChildView(deployment.ChildState.ABORTED, verdict.reason, verdict.detail)
                    child.end(aborted, self.now)
                else:
                    state, child.wake = replace(state, gated_through=plan.step_index), self.now
            elif plan.action is rollout.RolloutAction.WRITE:
                assert plan.percent is not None and plan.expected is not None and plan.step_index is not None
                write = SetPercentInput(flag_name=new.flag_name, percent=plan.percent, expected=plan.expected)
                child.wake = self.now
                try:
                    self.call(actor, "set_traffic_percent", write)
                except _Failed as refused:
                    if refused.info.name != "ConcurrentEdit":
                        raise
                else:  # refused: a person changed it; the next look stops
                    state = replace(state, percent=plan.percent, step_index=plan.step_index, step_started_at=self.now)
            elif plan.action is rollout.RolloutAction.WAIT:
                assert plan.wake_at is not None
                child.wake = plan.wake_at
            elif plan.action is rollout.RolloutAction.STOP:
                assert plan.stop is not None
                child.end(deployment.ChildView(deployment.ChildState.STOPPED, plan.stop.value), self.now)
            else:
                child.end(deployment.ChildView(deployment.ChildState.COMPLETED), self.now)
        except _Retry:
            child.wake = self.now + timedelta(seconds=RETRY_S)
        except _Failed as failure:
            child.end(
                deployment.ChildView(deployment.ChildState.FAILED, failure.info.name, failure.info.message), self.now
            )
        record.state = state
        self.children_move(record)

    def migration_move(self, record: _Deployment) -> None:
        """One wake of the migration, as ``ci.migration`` runs it: read the flags; with no sweep in progress, count the
        old queue and plan (``planner.sweep.next_sweep``): retire once drained, or wait; then one call of the world's
        ``migrate_sweep`` from the sweep's cursor, folded in by ``planner.sweep.record_progress``."""
        child, new, old = record.migrator, record.new, record.previous
        assert child is not None and new is not None and old is not None
        name = self.world.workflow_name
        # The pacing the CI leaves at its defaults, as its migration input builds it.
        pacing = MigrationInput(
            workflow_name=name, from_version=old, to_version=new, poll_interval_s=record.poll_s
        ).pacing
        try:
            flags = self.ask(child.workflow_id, "list_version_flags", ListFlagsInput(workflow_name=name), FlagList)
            cohort_plan, record.cohort = canary.look(record.canary, record.cohort, self.now)
            if record.sweeping is None:
                counted = self.ask(
                    child.workflow_id, "count_running", CountRunningInput(task_queue=old.task_queue), RunningCount
                )
                observed = sweep.QueueObservation(
                    running_on_old_queue=counted.running,
                    routing=migration.routing_key(flags.flags),
                    routes_new=migration.may_route_to(flags.flags, new.task_queue),
                )
                plan = sweep.next_sweep(record.sweep_log, observed, self.now, pacing)
                if plan.action is sweep.SweepAction.DRAINED:
                    retiring = self.retire_plan(old, child.workflow_id)
                    after = migration.after_drain(retiring)
                    if after is migration.MigrationAction.RETIRE:
                        self.retire(old, retiring, child.workflow_id)
                        child.end(deployment.ChildView(deployment.ChildState.COMPLETED), self.now)
                    elif after is migration.MigrationAction.HAND_OFF:
                        child.end(deployment.ChildView(deployment.ChildState.HANDED_OFF), self.now)
                soaking = cohort_plan.phase is CanaryPhase.SOAK  # nothing moves until the soak ends
                if plan.action is not sweep.SweepAction.SWEEP or soaking:
                    if child.wake is not None:
                        at = plan.at or self.now + timedelta(seconds=record.poll_s)
                        if soaking and plan.sweep is not None and cohort_plan.soak_until is not None:
                            at = min(cohort_plan.soak_until, at)
                        child.wake = max(at, self.now)
                    self.children_move(record)
                    return
                record.sweeping = canary.cohort_sweep(plan.sweep, cohort_plan)
            current = record.sweeping
            assert current is not None
            call = SweepInput(
                workflow_name=name,
                from_task_queue=old.task_queue,
                to_version=new,
                flags=flags.flags,
                covered=current.covered,
                recheck=current.recheck,
                since=current.since,
                cursor=current.cursor,
                batch_size=record.batch_size,
                pages=MIGRATION_PAGES_PER_CALL,
                cohort=cohort_plan.cohort if current.cohort else None,
            )
            progress = self.ask(child.workflow_id, "migrate_sweep", call, sweep.SweepProgress)
            record.sweeping, record.sweep_log = sweep.record_progress(
                current, record.sweep_log, progress, flags.flags, self.now
            )
            if current.cohort and record.cohort is not None:
                record.cohort = canary.record_cohort(record.cohort, progress)
            pause = progress.stalled or (record.sweeping is None and current.cohort)  # as ``ci.migration`` pauses
            if child.wake is not None:
                child.wake = self.now + timedelta(seconds=record.poll_s if pause else 0)
        except _Retry:
            child.wake = self.now + timedelta(seconds=RETRY_S)
        except _Failed as failure:
            child.end(
                deployment.ChildView(deployment.ChildState.FAILED, failure.info.name, failure.info.message), self.now
            )
        self.children_move(record)

    def cleanup_move(self, old: VersionInfo, child: _Child, poll_s: float) -> None:
        try:
            plan = self.retire_plan(old, child.workflow_id)
            if plan.blocker is None:
                self.retire(old, plan, child.workflow_id)
                child.end(deployment.ChildView(deployment.ChildState.COMPLETED), self.now)
            else:
                child.wake = self.now + timedelta(seconds=poll_s)
        except _Retry:
            child.wake = self.now + timedelta(seconds=RETRY_S)
        except _Failed:
            child.end(deployment.ChildView(deployment.ChildState.FAILED), self.now)

    def retire_plan(self, old: VersionInfo, actor: str) -> retire.RetirePlan:
        """The retire step's look, as the workflows take it: the running count, the flags, what the CI deploys."""
        name = self.world.workflow_name
        running = self.ask(actor, "count_running", CountRunningInput(task_queue=old.task_queue), RunningCount)
        flags = self.ask(actor, "list_version_flags", ListFlagsInput(workflow_name=name), FlagList)
        deploying = tuple(d.version for d in self.queue)
        snapshot = retire.RetireSnapshot(old, tuple(flags.flags), running.running, deploying)
        plan = retire.plan_retire(snapshot)
        if plan.delete_workers and (successor := retire.successor_queue(snapshot.flags)) is not None:
            look = ObserveWorkersInput(task_queue=successor)
            pollers = self.ask(actor, "observe_workers", look, WorkersObservation).pollers
            plan = retire.plan_retire(replace(snapshot, new_queue_pollers=pollers))
        return plan

    def retire(self, old: VersionInfo, plan: retire.RetirePlan, actor: str) -> None:
        """The retire step: archive first, then delete the workers, as the plan says."""
        name = self.world.workflow_name
        if plan.archive_flag:
            self.call(actor, "archive_version_flag", FlagNameInput(flag_name=old.flag_name, workflow_name=name))
        if plan.delete_workers:
            find = FindWorkersInput(workflow_name=name, version_id=old.version_id)
            for worker_set in self.ask(actor, "find_workers", find, WorkerSetList).worker_sets:
                self.call(actor, "delete_workers", DeleteWorkersInput(worker_set=worker_set))

    def children_move(self, record: _Deployment) -> None:
        """Whichever child ends first decides (``plan_children``); the CI carries the plan out: stops the children,
        routes back (at once, or a roll-back's steps apart), hands the old version to cleanup, ends."""
        if record is not self.current or record.phase in FINAL_PHASES or record.ending is not None:
            return
        children = (record.roller, record.migrator, record.health)
        views = [c.view if c is not None else None for c in children]
        snapshot = deployment.ChildrenSnapshot(views[0], views[1], stop=record.stop, health=views[2])
        plan = deployment.plan_children(snapshot)
        record.phase = plan.phase
        if plan.action is deployment.ChildrenAction.WAIT:
            return
        for child in children:
            if plan.stop_children and child is not None and child.wake is not None:
                child.stop_requested_at = self.now
                child.end(deployment.ChildView(deployment.ChildState.STOPPED), self.now)
        record.ending = plan
        if plan.route_back and record.new is not None:
            record.back = rollback.rollback_steps(record.rollback if record.stop is Control.ROLLBACK else None)
            record.back_wake = self.now + timedelta(seconds=record.back[0].wait_s)
            if record.back[0].wait_s == 0:
                self.back_move(record)
            return
        self.finish(record)

    def back_move(self, record: _Deployment) -> None:
        """One step of the route back: the new flag down to the step's percentage, on the value read; a person's
        change meanwhile ends it (they win), as does a failed store (the deployment still ends)."""
        assert record.new is not None
        ci = f"ci.{self.world.workflow_name}"
        step = record.back.pop(0)
        look = FlagNameInput(flag_name=record.new.flag_name, workflow_name=self.world.workflow_name)
        try:
            reading = self.ask(ci, "read_version_flag", look, FlagReading)
            back = deployment.plan_route_back(rollout.observe_flag(reading.flag), step.percent)
            if back is not None:
                write = SetPercentInput(flag_name=record.new.flag_name, percent=back.percent, expected=back.expected)
                self.call(ci, "set_traffic_percent", write)
        except _Retry:  # tried again a little later, as the workflow's retry policy does
            record.back.insert(0, step.model_copy(update={"wait_s": RETRY_S}))
        except _Failed as failure:
            record.back = []
            if failure.info.name != "ConcurrentEdit":  # anything but a person's edit fails the deployment
                record.back_wake = None
                return self.end(record, Phase.FAILED, DeploymentEnd(reason=failure.info.name, detail=str(failure)))
        if record.back:
            record.back_wake = self.now + timedelta(seconds=record.back[0].wait_s)
            if record.back[0].wait_s == 0:
                self.back_move(record)
            return
        record.back_wake = None
        self.finish(record)

    def finish(self, record: _Deployment) -> None:
        """The deployment's end as decided: cleanup of the old version handed over, then the end recorded."""
        plan = record.ending
        assert plan is not None
        if plan.start_cleanup and record.previous is not None:
            cleanup = _Child(cleanup_workflow_id(record.previous.task_queue), self.now, wake=self.now)
            self.cleanups.append((record.previous, cleanup, record.poll_s))
        if plan.phase is Phase.ABORTED and not any(d.version == record.event.version_id for d in self.queue):
            self.world.judge_aborted(record.new.flag_name if record.new else None)  # before a redeploy raises it
        self.end(record, plan.phase, plan.end or DeploymentEnd())

    def end(self, record: _Deployment, phase: Phase, end: DeploymentEnd) -> None:
        record.phase = phase
        self.phases.append(phase)
        if phase is Phase.FAILED:
            self.failures.append(f"{record.event.version_id}: {end.text}")
        self.deployed.append(deploy.Seen(record.event.version_id, record.event.event_time))
        self.history.append(
            Deployment(
                request=DeployRequest(event=record.event),
                phase=phase,
                from_version=record.previous,
                to_version=record.new,
                started_at=record.started_at,
                finished_at=self.now,
            )
        )
        self.current = None
        self.next_deployment()

    # ------------------------------------------------------------------------------------------- judging

    def look(self) -> None:
        """The referee looks at the world and at the deployment's children."""
        world = self.world
        running: dict[str, int] = {}
        for run in world.runs.values():
            running[run.task_queue] = running.get(run.task_queue, 0) + 1
        current = self.current
        pair = (current.roller, current.migrator, current.health) if current is not None else ()
        children = [c.as_seen() for c in pair if c is not None]
        world.referee.after_step(
            running_queues=running,
            worker_queues=world.served_queues(),
            delivered=world.delivered,
            current_started_at=current.started_at if current else None,
            latest_started_at=current.started_at if current else None,
            children=children,
            now=self.now,
        )

    def settle(self) -> None:
        """As in mode (a): the outage ends; a patient person continues, resumes, waits; cancels a deployment they
        interfered with."""
        self.world.outage_ends()
        while (current := self.current) is not None:
            began, cancelled = self.now, False
            while self.current is current:
                if current.phase is Phase.AWAITING_CONTINUE:
                    self.control(Control.CONTINUE)
                elif current.state is not None and current.state.paused:
                    self.control(Control.RESUME)
                if self.now - began > timedelta(seconds=CANCELLED_S if cancelled else SETTLE_S):
                    touched = {v.flag_name for v in (current.new, current.previous) if v is not None}
                    edited = {edit.split(":", 1)[0] for edit in self.world.hand_edits}
                    if cancelled or not touched & edited:
                        self.world.referee.violate(
                            "run-did-not-end", f"the deployment of {current.event.version_id} did not end"
                        )
                        return
                    self.control(Control.CANCEL)
                    began, cancelled = self.now, True
                    continue
                self.advance(SETTLE_STEP_S)
                self.look()
        self.world.referee.chain_ended(
            failed_run=deployment.run_failure(len(self.failures), self.failures) is not None,
            failed_deployments=self.failures,
        )


def _without_waiting(awaitable: Awaitable[T]) -> T:
    """The answer of a world handler that is a coroutine but never waits here (it would ask a running CI which
    versions it deploys; the model has none, so the world answers from its own queue)."""
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise RuntimeError("a world handler waited: the model of the CI cannot answer it")


def run_model(story: act.Story, name: str, *, world_type: type[World] = WatchedWorld) -> ModelRun:
    """Play one story against the model of the CI (see the module docstring); ``name`` is the workflow name,
    ``world_type`` the world's class (a ``WatchedWorld``, which a test may switch to an old behaviour)."""
    world = world_type(name)
    if not isinstance(world, WatchedWorld):
        raise TypeError("the model plays in a WatchedWorld")
    set_up(story.start, world)
    model = _Model(world)
    played = 0
    for action in story.actions:
        model.happen(action)
        played += 1
        model.advance(STEP_S)
        model.look()
    model.settle()
    failed = deployment.run_failure(len(model.failures), model.failures) is not None
    return ModelRun(list(world.referee.violations), played, model.phases, failed, world)
