"""The CI workflow (type ``workflowCI``, id ``ci.<workflowName>``): a FIFO queue of deployments of one workflow,
each taken live by executing the planner's plans (``diachronic.ci.planner``): observe, start (refuse, skip a
duplicate, or deploy), wait for the new version's workers and pass its gate (docs/gates.md), then an initial
deployment inline or a rollout child with a migration or cleanup child and a health child watching both versions.

Only the signals of the wire protocol and our updates are callable from outside; children report through their
results. Every run ends: when the queue is empty the run completes, or fails if any deployment of the run failed
(counted across continue-as-new)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any, NoReturn

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from diachronic.ci.activities import CIActivities
    from diachronic.ci.cleanup import CleanupWorkflow
    from diachronic.ci.contracts import (
        DB_QUERY,
        DEFAULT_READY_TIMEOUT_S,
        DEFAULT_STEP_TIMEOUT_S,
        DEPLOY_UPDATE,
        DEPLOYING_QUERY,
        HEALTH_STOP_SIGNAL,
        MAX_GATE_RUNS,
        MIGRATION_BATCH_SIZE,
        ROLLOUT_PAUSE_SIGNAL,
        ROLLOUT_PROMOTE_SIGNAL,
        ROLLOUT_RESUME_SIGNAL,
        STATUS_QUERY,
        Actor,
        ApplyFlagInput,
        CIInput,
        CIResult,
        CIState,
        CIStatus,
        CleanupRun,
        Control,
        ControlInput,
        ControlRecord,
        DeployAck,
        Deployment,
        DeploymentEnd,
        DeployRequest,
        DrainResult,
        GateRun,
        GateStage,
        HealthInput,
        HealthResult,
        HealthRun,
        HealthThresholds,
        MigrationInput,
        MigrationRun,
        ObserveDeploymentInput,
        Phase,
        ProbeMigrateBackInput,
        RetireInput,
        RollbackInput,
        RolloutInput,
        RolloutOutcome,
        RolloutResult,
        RolloutRun,
        RolloutState,
        cleanup_workflow_id,
        health_workflow_id,
        migration_workflow_id,
        rollout_workflow_id,
    )
    from diachronic.ci.freeze import freeze_in_force
    from diachronic.ci.gates import await_workers, count_gate, run_gate
    from diachronic.ci.health import HealthWorkflow
    from diachronic.ci.migration import MigrationWorkflow
    from diachronic.ci.outbox import OUTBOX_SETTLE, Outbox
    from diachronic.ci.planner import deploy, deployment, gate, readiness, rollback, rollout
    from diachronic.ci.planner.freeze import Freeze, freeze_gate
    from diachronic.ci.planner.health import HEALTH_CHECK_FAILED
    from diachronic.ci.planner.notifications import Progress, notifications
    from diachronic.ci.planner.schedule import MAX_PERCENT, default_steps
    from diachronic.ci.rollout import FlagSteps, RolloutWorkflow, StepRunner
    from diachronic.ci.steps import failure_message, failure_name, history_is_long, run_step
    from diachronic.contracts import (
        CI_WORKFLOW_TYPE,
        DEPLOY_SUCCESS_SIGNAL,
        ROLLOUT_CANCEL_SIGNAL,
        ROLLOUT_START_SIGNAL,
        DeployEvent,
        VersionInfo,
        ci_workflow_name,
    )
    from diachronic.flags import VersionFlag
    from diachronic.notify.events import DeploymentFacts
    from diachronic.versions import task_queue

MAX_HISTORY = 20
MAX_CONTROLS = 20
CLEANUP_POLL_S = 10.0
ROLLOUT_POLL_S = 1.0
MIGRATION_POLL_S = 2.0
READY_POLL_S = 2.0
CHILD_HISTORY = 2000
FRESH_RUN_PATCH = "fresh-run-after-a-cancelled-child"  # runs recorded before it went on in the same run
UNANSWERED_STOP_PATCH = "children-stopped-without-awaiting-answers"  # runs recorded before it awaited each answer
PROBE_ATTEMPT_TIMEOUT = timedelta(seconds=60)  # it may query a few stuck workflows, each up to its query timeout

AnyChild = workflow.ChildWorkflowHandle[Any, Any]


@workflow.defn(name=CI_WORKFLOW_TYPE)
class CIWorkflow:
    @workflow.init
    def __init__(self, input: CIInput | None = None) -> None:
        self.input = input or CIInput()
        self.state: CIState = self.input.state or CIState()
        self._continue = False
        self._stop: Control | None = None  # CANCEL, ABORT or ROLLBACK, asked for by a human
        self._stop_note: str | None = None
        self._rollback: RollbackInput | None = None  # how the roll-back asked for goes back
        self._rollout: workflow.ChildWorkflowHandle[Any, RolloutResult] | None = None
        self._health: workflow.ChildWorkflowHandle[Any, HealthResult] | None = None
        self._cancelled_children = False  # this run asked a child to cancel (see ``_fresh_run_needed``)
        self._stop_requests: set[asyncio.Task[None]] = set()  # stop requests whose answers are not awaited
        self.outbox = Outbox(self.state.outbox)  # notifications go out from a background task (ci.outbox)

    # ------------------------------------------------------------------------------------------- deploy

    def _workflow_name(self, event: DeployEvent) -> str:
        """The workflow this CI deploys: named by its id (``ci.<workflowName>``), else by its first deploy."""
        return ci_workflow_name(workflow.info().workflow_id) or self.state.workflow_name or event.workflow_name

    def _classify(self, event: DeployEvent) -> deploy.DeployDecision:
        current = self.state.current
        return deploy.classify_deploy(
            deploy.QueueSnapshot(
                ci_workflow_name=self._workflow_name(event),
                current=_seen(current.request) if current else None,
                queued=tuple(_seen(r) for r in self.state.queue),
                deployed=tuple(_seen(d.request) for d in self.state.history),
                deliveries=tuple(self.state.deliveries),
            ),
            event,
        )

    def _enqueue(self, request: DeployRequest) -> DeployAck:
        event = request.event
        decision = self._classify(event)
        if not decision.accepted:
            self._ignore(f"deploy of {event.workflow_name} {event.version_id} ignored: {decision.value}")
            return DeployAck(decision=decision.value)
        self.state.workflow_name = self._workflow_name(event)
        self.state.queue = [*self.state.queue, request]
        self.state.deliveries = deploy.remember_delivery(self.state.deliveries, event)
        return DeployAck(decision=decision.value, position=len(self.state.queue))

    def _ignore(self, why: str) -> None:
        self.state.ignored += 1
        self.state.last_ignored = why
        workflow.logger.warning(why)

    @workflow.signal(name=DEPLOY_SUCCESS_SIGNAL)
    def on_deploy_success(self, payload: Any) -> None:
        """The original's entry point: a GitHub deployment_status success. A bad payload is recorded, never fatal."""
        try:
            event = DeployEvent.model_validate(payload)
        except ValidationError as error:
            self._ignore(f"ignored an invalid deploy event: {error}")
            return
        self._enqueue(DeployRequest(event=event))

    @workflow.update(name=DEPLOY_UPDATE)
    def deploy(self, request: DeployRequest) -> DeployAck:
        return self._enqueue(request)

    @deploy.validator
    def _validate_deploy(self, request: DeployRequest) -> None:
        decision = self._classify(request.event)
        if decision.refused:
            raise ApplicationError(
                f"this CI deploys {self._workflow_name(request.event)}, not {request.event.workflow_name}",
                type="InvalidInput",
            )

    # ------------------------------------------------------------------------------------------- controls

    def _require(self, control: Control, *phases: Phase) -> Deployment:
        current = self.state.current
        if current is None:
            raise ApplicationError(f"{control}: nothing is being deployed", type="InvalidPhase")
        if current.phase not in phases:
            wanted = " or ".join(p.value for p in phases)
            raise ApplicationError(
                f"{control}: the deployment of {current.request.event.version_id} is {current.phase.value}, "
                f"not {wanted}",
                type="InvalidPhase",
            )
        return current

    def _record(self, control: Control, reason: str | None) -> None:
        """Every accepted control is kept with the reason given (status and the deployment's record show it)."""
        if (current := self.state.current) is not None:
            entry = ControlRecord(control=control, reason=reason, at=workflow.now())
            current.controls = [*current.controls, entry][-MAX_CONTROLS:]

    def _request_stop(self, control: Control, reason: str | None) -> None:
        self._record(control, reason)
        if self._stop is None:
            self._stop, self._stop_note = control, reason

    @workflow.signal(name=ROLLOUT_START_SIGNAL)
    def on_rollout_start(self, payload: Any = None) -> None:
        if self.state.current is not None and self.state.current.phase is Phase.AWAITING_CONTINUE:
            self._record(Control.CONTINUE, None)
            self._continue = True
        else:
            workflow.logger.warning("%s ignored: no dark deploy is waiting", ROLLOUT_START_SIGNAL)

    @workflow.signal(name=ROLLOUT_CANCEL_SIGNAL)
    def on_rollout_cancel(self, payload: Any = None) -> None:
        if self.state.current is not None and self.state.current.phase in CANCELLABLE:
            self._request_stop(Control.CANCEL, None)
        else:
            workflow.logger.warning("%s ignored: no rollout to cancel", ROLLOUT_CANCEL_SIGNAL)

    @workflow.update(name=Control.CONTINUE.update)
    def continue_(self, control: ControlInput) -> str:
        self._record(Control.CONTINUE, control.reason)
        self._continue = True
        return "continuing: the rollout starts"

    @continue_.validator
    def _validate_continue(self, control: ControlInput) -> None:
        self._require(Control.CONTINUE, Phase.AWAITING_CONTINUE)

    @workflow.update(name=Control.CANCEL.update)
    def cancel(self, control: ControlInput) -> str:
        self._request_stop(Control.CANCEL, control.reason)
        return "cancelling: automation stops, flags stay as they are"

    @cancel.validator
    def _validate_cancel(self, control: ControlInput) -> None:
        self._require(Control.CANCEL, *CANCELLABLE)

    @workflow.update(name=Control.ABORT.update)
    def abort(self, control: ControlInput) -> str:
        self._request_stop(Control.ABORT, control.reason)
        return "aborting: new starts go back to the previous version, migration stops"

    @abort.validator
    def _validate_abort(self, control: ControlInput) -> None:
        current = self._require(Control.ABORT, Phase.AWAITING_CONTINUE, Phase.ROLLING_OUT, Phase.MIGRATING)
        if current.from_version is None:
            raise ApplicationError("abort: an initial deployment has no previous version", type="InvalidPhase")

    @workflow.update(name=Control.ROLLBACK.update)
    def roll_back(self, control: RollbackInput) -> str:
        self._rollback = control
        self._request_stop(Control.ROLLBACK, control.reason)
        how = "step by step" if control.steps else "at once"
        return f"rolling back: new starts go back to the previous version {how}, migration stops"

    @roll_back.validator
    def _validate_roll_back(self, control: RollbackInput) -> None:
        if (refusal := rollback.rollback_refusal(self.state.current, self.state.history)) is not None:
            raise ApplicationError(refusal, type="InvalidPhase")

    async def _forward(self, control: Control, signal: str, reason: str | None) -> str:
        assert self._rollout is not None
        self._record(control, reason)
        await self._rollout.signal(signal)
        return f"{control}: sent to the rollout"

    def _require_rollout(self, control: Control) -> None:
        self._require(control, Phase.ROLLING_OUT)
        if self._rollout is None or self._rollout.done():
            raise ApplicationError(f"{control}: the rollout is over", type="InvalidPhase")

    @workflow.update(name=Control.PAUSE.update)
    async def pause(self, control: ControlInput) -> str:
        return await self._forward(Control.PAUSE, ROLLOUT_PAUSE_SIGNAL, control.reason)

    @pause.validator
    def _validate_pause(self, control: ControlInput) -> None:
        self._require_rollout(Control.PAUSE)

    @workflow.update(name=Control.RESUME.update)
    async def resume(self, control: ControlInput) -> str:
        return await self._forward(Control.RESUME, ROLLOUT_RESUME_SIGNAL, control.reason)

    @resume.validator
    def _validate_resume(self, control: ControlInput) -> None:
        self._require_rollout(Control.RESUME)

    @workflow.update(name=Control.PROMOTE.update)
    async def promote(self, control: ControlInput) -> str:
        return await self._forward(Control.PROMOTE, ROLLOUT_PROMOTE_SIGNAL, control.reason)

    @promote.validator
    def _validate_promote(self, control: ControlInput) -> None:
        self._require_rollout(Control.PROMOTE)

    # ------------------------------------------------------------------------------------------- queries

    @workflow.query(name=DB_QUERY)
    def db(self) -> CIState:
        return self.state

    @workflow.query(name=DEPLOYING_QUERY)
    def deploying(self) -> list[str]:
        """Versions the queue holds or the deployment in progress deploys: a retirement must keep their workers."""
        current = [self.state.current.request] if self.state.current else []
        return [r.event.version_id for r in [*current, *self.state.queue]]

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> CIStatus:
        """The CI's own view; ``diachronic.ci.client.status`` adds the children's live numbers."""
        current = self.state.current or (self.state.history[-1] if self.state.history else None)
        end = current.end if current else None
        return CIStatus(
            workflow_name=self.state.workflow_name or "",
            phase=current.phase if current else Phase.IDLE,
            from_version=current.from_version if current else None,
            to_version=current.to_version if current else None,
            rollout_percent=current.rollout.percent if current and current.rollout else None,
            next_step_at=None,
            steps=(current.request.options.steps or []) if current else [],
            paused=False,
            migration=None,
            queued=[r.event for r in self.state.queue],
            last_error=(end.text if end and end.reason else None) or self.state.last_ignored,
            end=end,
            frozen=self.state.frozen,
            non_migratory=current.request.event.is_non_migratory if current else False,
            cleanup_workflow_id=current.cleanup_workflow_id if current else None,
            drain_workflow_id=drain_workflow_id(current),
            recent=self.state.history[-5:],
            gates=current.gates if current else None,
        )

    # ------------------------------------------------------------------------------------------- run

    def _should_continue_as_new(self) -> bool:
        return history_is_long(self.input.continue_as_new_after)

    def _fresh_run_needed(self) -> bool:
        """A run that cancelled a child starts the next deployment's children from a fresh run. Temporal's test
        server (the simulation's) accepts one cancel request per workflow id from a run, and the children's ids are
        the same for every deployment: a second abort in one run was refused, over and over, and the CI hung."""
        return self._cancelled_children and workflow.patched(FRESH_RUN_PATCH)

    async def _continue_as_new(self) -> NoReturn:
        """Hand the state to a new run, once the outbox settled and no handler is running."""
        await self.outbox.settle(OUTBOX_SETTLE)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(CIInput(state=self.state, continue_as_new_after=self.input.continue_as_new_after))

    @workflow.run
    async def run(self, input: CIInput | None = None) -> CIResult:
        self.outbox.start()  # what a previous run decided and did not publish goes out first
        while True:
            await workflow.wait_condition(lambda: bool(self.state.queue) or workflow.all_handlers_finished())
            if not self.state.queue:
                # Idle: publish what is left before the run ends; a deploy arriving meanwhile is taken at once.
                await workflow.wait_condition(lambda: not self.outbox.pending or bool(self.state.queue))
                if not self.state.queue:
                    break
                continue
            if self._fresh_run_needed():
                await self._continue_as_new()
            overridden = await self._wait_for_thaw(self.state.queue[0])
            request, *rest = self.state.queue
            self.state.queue = rest
            record = Deployment(request=request, started_at=workflow.now(), overrode_freeze=overridden)
            self._tell(record, Progress(), Progress(phase=Phase.PREPARING))
            self.state.current = record
            self._continue, self._stop, self._stop_note, self._rollout = False, None, None, None
            self._rollback, self._health = None, None
            await self._deploy(record)
            self._finish(record)
            if self.state.queue and self._should_continue_as_new():
                await self._continue_as_new()
            await workflow.wait_condition(workflow.all_handlers_finished)
        result = CIResult(workflow_name=self.state.workflow_name, deployments=self.state.history)
        if (failure := deployment.run_failure(self.state.failed, self.state.failures)) is not None:
            raise ApplicationError(failure, result, type="DeploymentFailed", non_retryable=True)
        return result

    async def _wait_for_thaw(self, request: DeployRequest) -> Freeze | None:
        """A freeze holds the next deployment in the queue (``status`` says why and until when); returns the freeze
        a forced deployment goes through. Freezes that cannot be read do not hold anything (logged)."""
        while True:
            in_force = await freeze_in_force(request.event.workflow_name)
            now = workflow.now()
            verdict = freeze_gate(now, in_force, force_reason=request.options.force_reason)
            self.state.frozen = verdict.hold
            if verdict.hold is None:
                return verdict.overridden
            assert verdict.recheck_at is not None
            if self._should_continue_as_new():  # a freeze of days must not grow one run's history
                await self._continue_as_new()
            poll = request.options.poll_interval_s  # a deployment that asks to be checked more often is
            wake = min(verdict.recheck_at, now + timedelta(seconds=poll)) if poll else verdict.recheck_at
            await workflow.sleep(_seconds_until(wake))

    def _finish(self, record: Deployment) -> None:
        record.finished_at = workflow.now()
        self.state.history = [*self.state.history, record][-MAX_HISTORY:]
        self.state.current = None
        if record.phase is Phase.FAILED:
            reason = record.end.text if record.end else "failed"
            self.state.failed += 1
            self.state.failures = [*self.state.failures, f"{record.request.event.version_id}: {reason}"][
                -deployment.MAX_FAILURES_KEPT :
            ]

    @staticmethod
    def _facts(record: Deployment) -> DeploymentFacts:
        event = record.request.event
        return DeploymentFacts(
            workflow_name=event.workflow_name,
            version_id=event.version_id,
            started_at=record.started_at or workflow.now(),
            from_version_id=record.from_version.version_id if record.from_version else None,
            github=event.github_deployment,
        )

    def _tell(self, record: Deployment, before: Progress, after: Progress) -> None:
        """Publish what the planner says this change of the deployment produces (docs/pipeline.md)."""
        self.outbox.add(notifications(self._facts(record), before, after, now=workflow.now()))

    def _end(self, record: Deployment, phase: Phase, end: DeploymentEnd) -> None:
        self._tell(
            record,
            Progress(phase=record.phase),
            Progress(
                phase=phase,
                percent=record.rollout.percent if record.rollout else None,
                stopped_by_human=end.by is Actor.HUMAN,
                reason=end.text,
            ),
        )
        record.phase, record.end = phase, end
        log = workflow.logger.error if phase is Phase.FAILED else workflow.logger.info
        log("deployment of %s %s: %s", record.request.event.version_id, phase.value, end.text or "done")

    async def _deploy(self, record: Deployment) -> None:
        event, budget = record.request.event, _budget(record)
        try:
            observation = await run_step(
                CIActivities.observe_deployment,
                ObserveDeploymentInput(workflow_name=event.workflow_name, version_id=event.version_id),
                budget_s=budget,
            )
            start = deployment.plan_start(
                deployment.DeploymentSnapshot(
                    event=event,
                    flags=tuple(observation.flags),
                    environment=observation.environment,
                    twins=tuple(observation.twins),
                    redeploy=record.request.options.redeploy,
                )
            )
            record.from_version = start.previous
            if start.verdict is deployment.StartVerdict.REFUSE:
                assert start.refusal is not None
                self._end(record, Phase.FAILED, DeploymentEnd(reason=start.refusal.value, detail=start.detail))
                return
            if start.verdict is deployment.StartVerdict.DUPLICATE:
                self._end(record, Phase.DUPLICATE, DeploymentEnd(detail=start.detail))
                return
            if not await self._gates_before_traffic(record):
                return
            if self._stop is not None:  # cancelled while preparing: nothing was changed
                await self._carry_out(record, self._children_plan(None, None, None), children=[])
                return
            flag = await run_step(
                CIActivities.apply_version_flag,
                ApplyFlagInput(workflow_name=event.workflow_name, version_id=event.version_id),
                budget_s=budget,
            )
            record.to_version = flag.info
            if event.is_dark_deploy and self._stop is None:
                record.phase = Phase.AWAITING_CONTINUE
                await workflow.wait_condition(lambda: self._continue or self._stop is not None)
            if self._stop is not None:
                await self._carry_out(record, self._children_plan(None, None, None), children=[])
            elif start.previous is None:
                await self._initial(record, flag)
            else:
                redeploy = rollback.plan_redeploy(
                    event.version_id,
                    history=self.state.history,
                    newest_live=next((f.info.version_id for f in observation.flags if not f.archived), None),
                    now=workflow.now(),
                    steps_given=record.request.options.steps is not None,
                )
                await self._roll_out(record, start.previous, flag.info, redeploy)
        except (ApplicationError, ChildWorkflowError, WorkflowAlreadyStartedError) as error:
            name, message = failure_of(error)
            self._end(record, Phase.FAILED, DeploymentEnd(reason=name, detail=message))

    # ------------------------------------------------------------------------------------------- gates

    async def _gates_before_traffic(self, record: Deployment) -> bool:
        """Readiness, then the gate before the first step, before the version's flag exists (its dark strategy
        would route isTest traffic at once). False when the deployment ended here (or a human stopped the wait)."""
        event, options, gates = record.request.event, record.request.options, record.gates
        queue = task_queue(event.workflow_name, event.version_id)
        gates.stage = GateStage.WAITING_FOR_WORKERS
        ready = await await_workers(
            queue,
            timeout_s=options.ready_timeout_s or DEFAULT_READY_TIMEOUT_S,
            poll_interval_s=options.poll_interval_s or READY_POLL_S,
            budget_s=_budget(record),
            stopped=lambda: self._stop is not None,
            on_wait=lambda waiting: setattr(gates, "waiting_for", waiting),
        )
        if ready is None:  # a human stopped the deployment while it waited
            await self._carry_out(record, self._children_plan(None, None, None), children=[])
            return False
        if ready.action is readiness.ReadinessAction.FAIL:
            count_gate(event.workflow_name, "readiness", "failed")
            self._end(record, Phase.FAILED, DeploymentEnd(reason=readiness.WORKERS_NOT_READY, detail=ready.detail))
            return False
        count_gate(event.workflow_name, "readiness", "passed")
        gates.ready_at = workflow.now()
        if options.gate is not None and gate.gate_due(options.gate, 0):
            gates.stage = GateStage.GATE_RUNNING
            assert record.started_at is not None
            verdict = await run_gate(
                options.gate,
                workflow_name=event.workflow_name,
                task_queue=queue,
                step_index=0,
                deployment_started=record.started_at,
                on_run=lambda run: _note_gate_run(record, run),
            )
            if verdict.action is gate.GateAction.ABORT:
                assert verdict.reason is not None
                end = DeploymentEnd(reason=verdict.reason.value, detail=verdict.detail, by=Actor.GATES)
                self._end(record, Phase.ABORTED, end)
                return False
        gates.stage = GateStage.READY
        return True

    # ------------------------------------------------------------------------------------------- initial

    async def _initial(self, record: Deployment, flag: VersionFlag) -> None:
        """No previous version: the one-step rollout to 100 %, inline. A cancel is honoured until the write is
        made; one accepted while it is made ends the deployment cancelled, saying that the write was made."""
        record.phase = Phase.ROLLING_OUT
        steps = FlagSteps(flag.info, _budget(record))
        runner = StepRunner(steps, rollout.INITIAL_STEPS, ROLLOUT_POLL_S, RolloutState())
        observed = rollout.observe_flag(flag)
        while self._stop is None:
            plan = await runner.advance(observed)
            if plan.action is rollout.RolloutAction.STOP:
                assert plan.stop is not None
                record.rollout = runner.stopped(plan.stop, observed)
                end = DeploymentEnd(reason=record.rollout.reason, detail=record.rollout.detail)
                self._end(record, Phase.STOPPED, end)
                return
            if plan.action is rollout.RolloutAction.COMPLETE:
                record.rollout = RolloutResult(outcome=RolloutOutcome.COMPLETED, percent=runner.state.percent)
                self._end(record, Phase.COMPLETED, DeploymentEnd())
                return
            if plan.action is rollout.RolloutAction.WAIT:
                assert plan.wake_at is not None
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(lambda: self._stop is not None, timeout=_seconds_until(plan.wake_at))
            observed = await steps.observe()
        stopped = self._children_plan(None, None, None)
        if runner.state.percent == MAX_PERCENT and stopped.end is not None:
            note = f"{stopped.end.detail}; the write of 100 % had been made when the cancel arrived"
            stopped = dataclasses.replace(stopped, end=stopped.end.model_copy(update={"detail": note}))
        await self._carry_out(record, stopped, children=[])

    # ------------------------------------------------------------------------------------------- rollout

    def _children_plan(
        self, rollout_child: AnyChild | None, migration_child: AnyChild | None, health_child: AnyChild | None
    ) -> deployment.ChildrenPlan:
        return deployment.plan_children(
            deployment.ChildrenSnapshot(
                rollout=_rollout_view(rollout_child) if rollout_child is not None else None,
                migration=_migration_view(migration_child) if migration_child is not None else None,
                stop=self._stop,
                note=self._stop_note,
                health=_health_view(health_child) if health_child is not None else None,
            )
        )

    async def _roll_out(
        self, record: Deployment, previous: VersionInfo, new: VersionInfo, redeploy: rollback.RedeployPlan
    ) -> None:
        event, options = record.request.event, record.request.options
        name, can_after = event.workflow_name, options.continue_as_new_after or CHILD_HISTORY
        record.phase = Phase.ROLLING_OUT
        record.gates.redeploy_rollback = redeploy.rollback
        if redeploy.rollback and options.migrate_back and not event.is_non_migratory:
            await self._judge_migrate_back(record, old=new, new=previous)  # back to this version from the previous
        migratory = not event.is_non_migratory and (not redeploy.rollback or record.gates.moves_back)
        every_step = options.gate if options.gate is not None and options.gate.every_step else None
        children: list[AnyChild] = []
        try:
            rollout_child = await workflow.start_child_workflow(
                RolloutWorkflow.run,
                RolloutRun(
                    input=RolloutInput(
                        workflow_name=name,
                        to_version=new,
                        steps=list(redeploy.steps or options.steps or default_steps()),
                        poll_interval_s=options.poll_interval_s or ROLLOUT_POLL_S,
                        continue_as_new_after=can_after,
                        step_timeout_s=_budget(record),
                        gate=every_step,
                        deployment_started=record.started_at,
                        report=self._facts(record),
                        force_reason=options.force_reason,
                    )
                ),
                id=rollout_workflow_id(name),
                parent_close_policy=ParentClosePolicy.TERMINATE,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            )
            self._rollout = rollout_child
            children.append(rollout_child)
            health_child = await workflow.start_child_workflow(
                HealthWorkflow.run,
                HealthRun(
                    input=HealthInput(
                        workflow_name=name,
                        from_version=previous,
                        to_version=new,
                        thresholds=options.health or HealthThresholds(),
                        since=workflow.now(),
                        poll_interval_s=options.poll_interval_s or ROLLOUT_POLL_S,
                        continue_as_new_after=can_after,
                        step_timeout_s=_budget(record),
                    )
                ),
                id=health_workflow_id(name),
                parent_close_policy=ParentClosePolicy.TERMINATE,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            )
            self._health = health_child
            record.gates.health_workflow_id = health_workflow_id(name)
            children.append(health_child)
            migration_child: workflow.ChildWorkflowHandle[Any, DrainResult] | None = None
            if migratory:
                migration_child = await self._start_migration(record, previous, new, retire=True)
                children.append(migration_child)
        except WorkflowAlreadyStartedError:
            await self._stop_children(children)  # no child outlives a failed deployment
            raise
        plan = self._children_plan(rollout_child, migration_child, health_child)
        while plan.action is deployment.ChildrenAction.WAIT:
            record.phase = plan.phase
            await workflow.wait_condition(
                lambda seen=plan: (
                    self._children_plan(rollout_child, migration_child, health_child)  # type: ignore[misc]
                    != seen
                )
            )
            plan = self._children_plan(rollout_child, migration_child, health_child)
        await self._carry_out(record, plan, children=children)

    async def _start_migration(
        self, record: Deployment, old: VersionInfo, new: VersionInfo, *, retire: bool
    ) -> workflow.ChildWorkflowHandle[Any, DrainResult]:
        options = record.request.options
        return await workflow.start_child_workflow(
            MigrationWorkflow.run,
            MigrationRun(
                input=MigrationInput(
                    workflow_name=record.request.event.workflow_name,
                    from_version=old,
                    to_version=new,
                    poll_interval_s=options.poll_interval_s or MIGRATION_POLL_S,
                    batch_size=options.batch_size or MIGRATION_BATCH_SIZE,
                    continue_as_new_after=options.continue_as_new_after or CHILD_HISTORY,
                    step_timeout_s=_budget(record),
                    report=self._facts(record),
                    retire_delay_s=options.retire_delay_s or 0,
                    retire=retire,
                    canary=options.canary if retire else None,  # a migrate-back moves everyone at once
                )
            ),
            id=migration_workflow_id(record.request.event.workflow_name),
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )

    async def _judge_migrate_back(self, record: Deployment, *, old: VersionInfo, new: VersionInfo) -> None:
        """Ask the code of both versions which states they carry and accept; the planner says whether the workflows
        on ``new`` may move back to ``old`` (recorded, with why)."""
        evidence = await run_step(
            CIActivities.probe_migrate_back,
            ProbeMigrateBackInput(
                workflow_name=record.request.event.workflow_name,
                old_task_queue=old.task_queue,
                new_task_queue=new.task_queue,
            ),
            budget_s=_budget(record),
            attempt_timeout=PROBE_ATTEMPT_TIMEOUT,
        )
        verdict = rollback.migrate_back_verdict(evidence, old_version=old.version_id, new_version=new.version_id)
        record.gates.moves_back, record.gates.migrate_back = verdict.allowed, verdict.detail
        workflow.logger.info("migrate back from %s to %s: %s", new.version_id, old.version_id, verdict.detail)

    async def _carry_out(self, record: Deployment, plan: deployment.ChildrenPlan, *, children: list[AnyChild]) -> None:
        """Execute the end of a deployment as planned: stop the children, route back, hand over to cleanup."""
        if plan.stop_children:
            await self._stop_children(children)
        for child in children:
            if child.done() and not child.cancelled() and child.exception() is None:
                result = child.result()
                if isinstance(result, HealthResult):
                    record.gates.breach = result.breach
                    continue
                self.outbox.add(result.unpublished)  # what the child could not publish before it ended
                if isinstance(result, RolloutResult):
                    record.rollout = result.model_copy(update={"unpublished": []})
                    record.overrode_freeze = record.overrode_freeze or result.overrode_freeze
                    if result.gate is not None:
                        _note_gate_run(record, result.gate)
                else:
                    record.migration = result.model_copy(update={"unpublished": []})
        if children and record.to_version is not None:
            health = "failed" if record.gates.breach is not None else "passed"
            count_gate(record.request.event.workflow_name, "health", health)
        end = plan.end or DeploymentEnd()
        if plan.route_back and record.to_version is not None:
            end = await self._route_back(record, end)
            rolled = self._rollback
            if rolled is not None and rolled.migrate_back and record.from_version is not None:
                await self._migrate_back(record, record.from_version, record.to_version)
        if plan.start_cleanup and record.from_version is not None:
            record.cleanup_workflow_id = await self._start_cleanup(record, record.from_version, plan.phase)
        self._end(record, plan.phase, end)

    async def _route_back(self, record: Deployment, end: DeploymentEnd) -> DeploymentEnd:
        """Abort: the new version's general percentage to 0 (at once, or down a roll-back's steps), each write on
        the value read; a human's change meanwhile wins."""
        assert record.to_version is not None
        steps = FlagSteps(record.to_version, _budget(record))
        for step in rollback.rollback_steps(self._rollback.steps if self._rollback is not None else None):
            if step.wait_s > 0:
                await workflow.sleep(step.wait_s)
            write = deployment.plan_route_back(await steps.observe(), step.percent)
            if write is not None and not await steps.write(write.percent, write.expected):
                return end.model_copy(
                    update={"detail": f"{end.detail}; the flag changed meanwhile: left as a human set it"}
                )
        return end

    async def _migrate_back(self, record: Deployment, old: VersionInfo, new: VersionInfo) -> None:
        """``rollback --migrate-back``: when the old code accepts their state, the workflows on the new version move
        back (a migration that ends once drained: the new version stays, it is the newest)."""
        await self._judge_migrate_back(record, old=old, new=new)
        if not record.gates.moves_back:
            return
        record.phase = Phase.MIGRATING
        moved_back = await (await self._start_migration(record, new, old, retire=False))
        self.outbox.add(moved_back.unpublished)
        record.migration = moved_back.model_copy(update={"unpublished": []})

    async def _start_cleanup(self, record: Deployment, previous: VersionInfo, ended: Phase) -> str:
        """Cleanup may wait for days: it runs on its own, the queue moves on (the deployment ends ``ended``)."""
        child_id = cleanup_workflow_id(previous.task_queue)
        options = record.request.options
        try:
            await workflow.start_child_workflow(
                CleanupWorkflow.run,
                CleanupRun(
                    input=RetireInput(
                        workflow_name=record.request.event.workflow_name,
                        from_version=previous,
                        poll_interval_s=options.poll_interval_s or CLEANUP_POLL_S,
                        continue_as_new_after=options.continue_as_new_after or CHILD_HISTORY,
                        step_timeout_s=_budget(record),
                        report=self._facts(record),
                        ended=ended,
                        retire_delay_s=options.retire_delay_s or 0,
                    )
                ),
                id=child_id,
                parent_close_policy=ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            workflow.logger.info("cleanup of %s already runs", previous.task_queue)
        return child_id

    async def _stop_children(self, children: list[AnyChild]) -> None:
        """Stop the children still running, by workflow id: a child handle's cancel goes to the run the child started
        with, and is lost once the child continued as new (the CI then waited for it forever and never routed back).
        The health workflow is told to stop by a signal (it ends healthy); the rollout and the migration are
        cancelled. What is awaited is each child's end, not the answer to the request: Temporal's test server never
        answers a cancel of a child that ended meanwhile, and the CI waited for that answer until its run timed out."""
        answers_awaited = not workflow.patched(UNANSWERED_STOP_PATCH)
        for child in children:
            if child.done():
                continue
            current = workflow.get_external_workflow_handle(child.id)
            if child is self._health:
                request = current.signal(HEALTH_STOP_SIGNAL)
            else:
                self._cancelled_children = True
                request = current.cancel()
            if answers_awaited:
                await _unless_ended(request)
            else:
                sent = asyncio.create_task(_unless_ended(request))
                self._stop_requests.add(sent)
                sent.add_done_callback(self._stop_requests.discard)
        for child in children:
            with contextlib.suppress(ChildWorkflowError, CancelledError, asyncio.CancelledError):
                await child


async def _unless_ended(request: Awaitable[None]) -> None:
    """A stop request to a child; refused when the child ended meanwhile, which is what was wanted."""
    with contextlib.suppress(FailureError):
        await request


CANCELLABLE = (Phase.PREPARING, Phase.AWAITING_CONTINUE, Phase.ROLLING_OUT, Phase.MIGRATING)


def _seen(request: DeployRequest) -> deploy.Seen:
    return deploy.Seen(request.event.version_id, request.event.event_time)


def _budget(record: Deployment) -> float:
    return record.request.options.step_timeout_s or DEFAULT_STEP_TIMEOUT_S


def _seconds_until(moment: datetime) -> float:
    return max((moment - workflow.now()).total_seconds(), 0.001)


def _failed_view(child: AnyChild) -> deployment.ChildView | None:
    if not child.done():
        return deployment.RUNNING
    if child.cancelled():
        return deployment.ChildView(deployment.ChildState.FAILED, "ChildCancelled", "the child workflow was cancelled")
    if (error := child.exception()) is not None:
        name, message = failure_of(error)
        return deployment.ChildView(deployment.ChildState.FAILED, name, message)
    return None


def _rollout_view(child: AnyChild) -> deployment.ChildView:
    if (view := _failed_view(child)) is not None:
        return view
    result: RolloutResult = child.result()
    if result.outcome is RolloutOutcome.STOPPED:
        return deployment.ChildView(deployment.ChildState.STOPPED, result.reason, result.detail)
    if result.outcome is RolloutOutcome.ABORTED:
        return deployment.ChildView(deployment.ChildState.ABORTED, result.reason, result.detail)
    return deployment.ChildView(deployment.ChildState.COMPLETED)


def _health_view(child: AnyChild) -> deployment.ChildView:
    if (view := _failed_view(child)) is not None:
        return view
    breach = child.result().breach
    if breach is None:  # stopped: the deployment ended otherwise
        return deployment.ChildView(deployment.ChildState.COMPLETED)
    detail = f"{breach.rule}: {breach.detail}" if breach.rule else breach.detail
    return deployment.ChildView(deployment.ChildState.ABORTED, HEALTH_CHECK_FAILED, detail)


def _note_gate_run(record: Deployment, run: GateRun) -> None:
    """The gate run in the deployment's record (replacing its earlier state), the last ``MAX_GATE_RUNS`` kept."""
    runs = [r for r in record.gates.gate_runs if r.workflow_id != run.workflow_id]
    record.gates.gate_runs = [*runs, run][-MAX_GATE_RUNS:]


def _migration_view(child: AnyChild) -> deployment.ChildView:
    if (view := _failed_view(child)) is not None:
        return view
    result: DrainResult = child.result()
    return deployment.ChildView(
        deployment.ChildState.HANDED_OFF if result.handed_off else deployment.ChildState.COMPLETED
    )


def drain_workflow_id(record: Deployment | None) -> str | None:
    """The workflow draining and retiring the deployment's previous version: its migration, or its cleanup."""
    if record is None or record.from_version is None:
        return None
    stays = record.gates.redeploy_rollback and not record.gates.moves_back  # a roll-back by redeploy: cleanup
    if record.request.event.is_non_migratory or stays:
        return record.cleanup_workflow_id
    return migration_workflow_id(record.request.event.workflow_name)


def failure_of(error: BaseException) -> tuple[str, str]:
    """The innermost typed reason of a failure: (name, message)."""
    while isinstance(error, ChildWorkflowError | ActivityError) and error.cause is not None:
        error = error.cause
    if isinstance(error, WorkflowAlreadyStartedError):
        return (
            "ChildStillRunning",
            f"{error.workflow_id} of an earlier deployment still runs; deploy again once it ended",
        )
    return failure_name(error), failure_message(error)
