"""The CI workflow (type ``workflowCI``, id ``ci.<workflowName>``): a FIFO queue of deployments of one workflow,
each taken live by sequencing flags, a rollout child, and a migration or cleanup child.

Only the signals of the wire protocol and our updates are callable from outside; children report through
their results. Every run ends: when the queue is empty the run completes (or fails if a deployment failed)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from diachronic import versions
    from diachronic.ci.activities import CIActivities
    from diachronic.ci.cleanup import CleanupWorkflow
    from diachronic.ci.contracts import (
        DB_QUERY,
        DEPLOY_UPDATE,
        FINAL_PHASES,
        ROLLOUT_PAUSE_SIGNAL,
        ROLLOUT_PROMOTE_SIGNAL,
        ROLLOUT_RESUME_SIGNAL,
        STATUS_QUERY,
        ApplyFlagInput,
        CIInput,
        CIResult,
        CIState,
        CIStatus,
        CleanupRun,
        Control,
        ControlInput,
        DeployAck,
        Deployment,
        DeployRequest,
        DrainResult,
        ListFlagsInput,
        MigrationInput,
        MigrationRun,
        Phase,
        RetireInput,
        RolloutInput,
        RolloutOutcome,
        RolloutResult,
        RolloutRun,
        SetPercentInput,
        cleanup_workflow_id,
        migration_workflow_id,
        rollout_workflow_id,
    )
    from diachronic.ci.migration import MigrationWorkflow
    from diachronic.ci.planner import deploy, deployment
    from diachronic.ci.planner.schedule import MAX_PERCENT, default_steps
    from diachronic.ci.rollout import RolloutWorkflow
    from diachronic.ci.steps import call, history_is_long
    from diachronic.contracts import (
        CI_WORKFLOW_TYPE,
        DEPLOY_SUCCESS_SIGNAL,
        ROLLOUT_CANCEL_SIGNAL,
        ROLLOUT_START_SIGNAL,
        DeployEvent,
        VersionInfo,
    )

MAX_HISTORY = 20
CLEANUP_POLL_S = 10.0


@workflow.defn(name=CI_WORKFLOW_TYPE)
class CIWorkflow:
    @workflow.init
    def __init__(self, input: CIInput | None = None) -> None:
        self.input = input or CIInput()
        self.state: CIState = self.input.state or CIState()
        self._continue = False
        self._stop: Phase | None = None  # CANCELLED or ABORTED, asked for by a human
        self._rollout: workflow.ChildWorkflowHandle[Any, RolloutResult] | None = None
        self._failed_in_run: list[str] = []

    # ------------------------------------------------------------------------------------------- deploy

    def _enqueue(self, request: DeployRequest) -> DeployAck:
        event = request.event
        if self.state.workflow_name is None:
            self.state.workflow_name = event.workflow_name
        current = self.state.current.request.event.version_id if self.state.current else None
        decision = deploy.classify_deploy(
            event.version_id, current=current, queued=[r.event.version_id for r in self.state.queue]
        )
        if decision is not deploy.DeployDecision.ACCEPT:
            workflow.logger.info("deploy of %s ignored: %s", event.version_id, decision.value)
            self.state.ignored += 1
            return DeployAck(decision=decision.value)
        self.state.queue = [*self.state.queue, request]
        return DeployAck(decision=decision.value, position=len(self.state.queue))

    def _check_deploy(self, request: DeployRequest) -> None:
        if self.state.workflow_name not in (None, request.event.workflow_name):
            raise ApplicationError(
                f"this CI deploys {self.state.workflow_name}, not {request.event.workflow_name}", type="InvalidInput"
            )

    @workflow.signal(name=DEPLOY_SUCCESS_SIGNAL)
    def on_deploy_success(self, payload: Any) -> None:
        """The original's entry point: a GitHub deployment_status success. A bad payload is logged, never fatal."""
        try:
            request = DeployRequest(event=DeployEvent.model_validate(payload))
            self._check_deploy(request)
        except (ValidationError, ApplicationError) as error:
            self.state.ignored += 1
            self.state.last_error = f"ignored an invalid deploy event: {error}"
            workflow.logger.warning(self.state.last_error)
            return
        self._enqueue(request)

    @workflow.update(name=DEPLOY_UPDATE)
    def deploy(self, request: DeployRequest) -> DeployAck:
        return self._enqueue(request)

    @deploy.validator
    def _validate_deploy(self, request: DeployRequest) -> None:
        self._check_deploy(request)

    # ------------------------------------------------------------------------------------------- controls

    def _require(self, control: str, *phases: Phase) -> Deployment:
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

    @workflow.signal(name=ROLLOUT_START_SIGNAL)
    def on_rollout_start(self, payload: Any = None) -> None:
        if self.state.current is not None and self.state.current.phase is Phase.AWAITING_CONTINUE:
            self._continue = True
        else:
            workflow.logger.warning("%s ignored: no dark deploy is waiting", ROLLOUT_START_SIGNAL)

    @workflow.signal(name=ROLLOUT_CANCEL_SIGNAL)
    def on_rollout_cancel(self, payload: Any = None) -> None:
        if self.state.current is not None and self.state.current.phase not in FINAL_PHASES:
            self._stop = self._stop or Phase.CANCELLED
        else:
            workflow.logger.warning("%s ignored: no rollout to cancel", ROLLOUT_CANCEL_SIGNAL)

    @workflow.update(name=Control.CONTINUE.update)
    def continue_(self, control: ControlInput) -> str:
        self._continue = True
        return "continuing: the rollout starts"

    @continue_.validator
    def _validate_continue(self, control: ControlInput) -> None:
        self._require("continue", Phase.AWAITING_CONTINUE)

    @workflow.update(name=Control.CANCEL.update)
    def cancel(self, control: ControlInput) -> str:
        self._stop = Phase.CANCELLED
        return "cancelling: automation stops, flags stay as they are"

    @cancel.validator
    def _validate_cancel(self, control: ControlInput) -> None:
        self._require("cancel", Phase.PREPARING, Phase.AWAITING_CONTINUE, Phase.ROLLING_OUT, Phase.MIGRATING)

    @workflow.update(name=Control.ABORT.update)
    def abort(self, control: ControlInput) -> str:
        self._stop = Phase.ABORTED
        return "aborting: new starts go back to the previous version, migration stops"

    @abort.validator
    def _validate_abort(self, control: ControlInput) -> None:
        current = self._require("abort", Phase.AWAITING_CONTINUE, Phase.ROLLING_OUT, Phase.MIGRATING)
        if current.from_version is None:
            raise ApplicationError("abort: an initial deployment has no previous version", type="InvalidPhase")

    async def _forward(self, signal: str) -> str:
        assert self._rollout is not None
        await self._rollout.signal(signal)
        return f"{signal.rsplit('.', 1)[-1]}: sent to the rollout"

    def _require_rollout(self, control: str) -> None:
        self._require(control, Phase.ROLLING_OUT)
        if self._rollout is None or self._rollout.done():
            raise ApplicationError(f"{control}: the rollout is over", type="InvalidPhase")

    @workflow.update(name=Control.PAUSE.update)
    async def pause(self, control: ControlInput) -> str:
        return await self._forward(ROLLOUT_PAUSE_SIGNAL)

    @pause.validator
    def _validate_pause(self, control: ControlInput) -> None:
        self._require_rollout("pause")

    @workflow.update(name=Control.RESUME.update)
    async def resume(self, control: ControlInput) -> str:
        return await self._forward(ROLLOUT_RESUME_SIGNAL)

    @resume.validator
    def _validate_resume(self, control: ControlInput) -> None:
        self._require_rollout("resume")

    @workflow.update(name=Control.PROMOTE.update)
    async def promote(self, control: ControlInput) -> str:
        return await self._forward(ROLLOUT_PROMOTE_SIGNAL)

    @promote.validator
    def _validate_promote(self, control: ControlInput) -> None:
        self._require_rollout("promote")

    # ------------------------------------------------------------------------------------------- queries

    @workflow.query(name=DB_QUERY)
    def db(self) -> CIState:
        return self.state

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> CIStatus:
        """The CI's own view; ``diachronic.ci.status`` adds the children's live numbers."""
        current = self.state.current or (self.state.history[-1] if self.state.history else None)
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
            last_error=(current.error if current and current.error else None) or self.state.last_error,
            non_migratory=current.request.event.is_non_migratory if current else False,
            cleanup_workflow_id=current.cleanup_workflow_id if current else None,
            drain_workflow_id=drain_workflow_id(current),
            recent=self.state.history[-5:],
        )

    # ------------------------------------------------------------------------------------------- run

    def _record_wait(self, reason: str | None) -> None:
        self.state.last_error = reason

    def _should_continue_as_new(self) -> bool:
        return history_is_long(self.input.continue_as_new_after)

    @workflow.run
    async def run(self, input: CIInput | None = None) -> CIResult:
        while True:
            await workflow.wait_condition(lambda: bool(self.state.queue) or workflow.all_handlers_finished())
            if not self.state.queue:
                break
            request, *rest = self.state.queue
            self.state.queue = rest
            record = Deployment(request=request, started_at=workflow.now())
            self.state.current = record
            self._continue, self._stop, self.state.last_error = False, None, None
            await self._deploy(record)
            record.finished_at = workflow.now()
            self.state.history = [*self.state.history, record][-MAX_HISTORY:]
            self.state.current = None
            if record.phase is Phase.FAILED:
                self._failed_in_run.append(f"{record.request.event.version_id}: {record.error}")
            if self.state.queue and self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    CIInput(state=self.state, continue_as_new_after=self.input.continue_as_new_after)
                )
            await workflow.wait_condition(workflow.all_handlers_finished)
        if self._failed_in_run:
            raise ApplicationError(
                "deployment failed: " + "; ".join(self._failed_in_run),
                CIResult(workflow_name=self.state.workflow_name, deployments=self.state.history),
                type="DeploymentFailed",
                non_retryable=True,
            )
        return CIResult(workflow_name=self.state.workflow_name, deployments=self.state.history)

    async def _deploy(self, record: Deployment) -> None:
        event = record.request.event
        try:
            flags = await call(
                CIActivities.list_version_flags,
                ListFlagsInput(workflow_name=event.workflow_name),
                on_wait=self._record_wait,
            )
            previous = versions.previous_version(flags.flags, event.version_id)
            record.from_version = previous
            record.to_version = await call(
                CIActivities.apply_version_flag,
                ApplyFlagInput(workflow_name=event.workflow_name, version_id=event.version_id),
                on_wait=self._record_wait,
            )
            if self._stop is not None:
                record.phase = self._stop
                return
            if event.is_dark_deploy:
                record.phase = Phase.AWAITING_CONTINUE
                await workflow.wait_condition(lambda: self._continue or self._stop is not None)
                if self._stop is not None:
                    await self._finish_stopped(record, rollout=None, children=[])
                    return
            plan = deployment.plan_deployment(previous)
            record.phase = Phase.ROLLING_OUT
            if plan.kind is deployment.DeploymentKind.INITIAL:
                await self._set_percent(record.to_version, MAX_PERCENT)
                record.rollout = RolloutResult(outcome=RolloutOutcome.COMPLETED, percent=MAX_PERCENT)
                record.phase = Phase.COMPLETED
                return
            assert previous is not None
            await self._roll_out(record, previous, record.to_version)
        except (ApplicationError, ChildWorkflowError, WorkflowAlreadyStartedError) as error:
            record.phase = Phase.FAILED
            record.error = failure_text(error)
            self.state.last_error = record.error
            workflow.logger.error("deployment of %s failed: %s", event.version_id, record.error)

    async def _set_percent(self, version: VersionInfo, percent: int) -> None:
        await call(
            CIActivities.set_traffic_percent,
            SetPercentInput(flag_name=version.flag_name, percent=percent),
            on_wait=self._record_wait,
        )

    async def _roll_out(self, record: Deployment, previous: VersionInfo, new: VersionInfo) -> None:
        event, options = record.request.event, record.request.options
        name = event.workflow_name
        can_after = options.continue_as_new_after or 2000
        rollout = await workflow.start_child_workflow(
            RolloutWorkflow.run,
            RolloutRun(
                input=RolloutInput(
                    workflow_name=name,
                    to_version=new,
                    steps=options.steps or default_steps(),
                    poll_interval_s=options.poll_interval_s or 1.0,
                    continue_as_new_after=can_after,
                )
            ),
            id=rollout_workflow_id(name),
            parent_close_policy=ParentClosePolicy.TERMINATE,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
        self._rollout = rollout
        migration: workflow.ChildWorkflowHandle[Any, DrainResult] | None = None
        if not event.is_non_migratory:
            migration = await workflow.start_child_workflow(
                MigrationWorkflow.run,
                MigrationRun(
                    input=MigrationInput(
                        workflow_name=name,
                        from_version=previous,
                        to_version=new,
                        poll_interval_s=options.poll_interval_s or 2.0,
                        batch_size=options.batch_size or 500,
                        continue_as_new_after=can_after,
                    )
                ),
                id=migration_workflow_id(name),
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            )
        children = [c for c in (rollout, migration) if c is not None]
        try:
            for child in children:
                await workflow.wait_condition(lambda c=child: self._stop is not None or c.done())  # type: ignore[misc]
                if self._stop is not None:
                    await self._finish_stopped(record, rollout=rollout, children=children)
                    return
                if child is rollout:
                    record.rollout = rollout.result()
                    if record.rollout.outcome is RolloutOutcome.STOPPED:
                        self.state.last_error = record.rollout.detail
                    record.phase = Phase.MIGRATING if migration is not None else record.phase
            if migration is not None:
                record.migration = migration.result()
        except ChildWorkflowError:
            await self._stop_children(children)  # the next deployment must not meet a leftover child
            raise
        if migration is None:
            record.cleanup_workflow_id = await self._start_cleanup(name, previous, options.poll_interval_s, can_after)
        record.phase = Phase.COMPLETED

    async def _start_cleanup(self, name: str, previous: VersionInfo, poll_s: float | None, can_after: int) -> str:
        """Cleanup of a non-migratory version may wait for days: it runs on its own, the queue moves on."""
        child_id = cleanup_workflow_id(previous.task_queue)
        try:
            await workflow.start_child_workflow(
                CleanupWorkflow.run,
                CleanupRun(
                    input=RetireInput(
                        workflow_name=name,
                        from_version=previous,
                        poll_interval_s=poll_s or CLEANUP_POLL_S,
                        continue_as_new_after=can_after,
                    )
                ),
                id=child_id,
                parent_close_policy=ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            workflow.logger.info("cleanup of %s already runs", previous.task_queue)
        return child_id

    async def _stop_children(self, children: list[workflow.ChildWorkflowHandle[Any, Any]]) -> None:
        for child in children:
            if not child.done():
                child.cancel()
        for child in children:
            with contextlib.suppress(ChildWorkflowError, CancelledError, asyncio.CancelledError):
                await child

    async def _finish_stopped(
        self,
        record: Deployment,
        *,
        rollout: workflow.ChildWorkflowHandle[Any, RolloutResult] | None,
        children: list[workflow.ChildWorkflowHandle[Any, Any]],
    ) -> None:
        """Cancel: children stop, flags stay. Abort: also route new starts back to the previous version."""
        stop = self._stop
        assert stop is not None
        await self._stop_children(children)
        if rollout is not None and rollout.done() and not rollout.cancelled() and rollout.exception() is None:
            record.rollout = rollout.result()
        if stop is Phase.ABORTED and record.to_version is not None and record.from_version is not None:
            await self._set_percent(record.to_version, 0)
        record.phase = stop
        record.error = f"{stop.value} by request"


def drain_workflow_id(record: Deployment | None) -> str | None:
    """The workflow draining and retiring the deployment's previous version: its migration, or its cleanup."""
    if record is None or record.from_version is None:
        return None
    if record.request.event.is_non_migratory:
        return record.cleanup_workflow_id
    return migration_workflow_id(record.request.event.workflow_name)


def failure_text(error: BaseException) -> str:
    """The innermost typed reason of a failure: ``Name: message``."""
    while isinstance(error, ChildWorkflowError | ActivityError) and error.cause is not None:
        error = error.cause
    if isinstance(error, ApplicationError):
        return f"{error.type or 'ApplicationError'}: {error.message}"
    if isinstance(error, WorkflowAlreadyStartedError):
        return f"ChildStillRunning: {error.workflow_id} of an earlier deployment still runs; deploy again once it ended"
    return f"{type(error).__name__}: {error}"
