"""The rollout workflow: raise the share of new starts routed to the new version, step by step, and step aside
the moment a human changes the percentage (the safety valve, and the fast-forward).

It executes the step machine of ``diachronic.ci.planner.rollout``: look at the flag, ask the planner, do what it
says (every write conditional on the value read; with ``--gate-every-step``, the gate workflow first), sleep until
the planner's next deadline or a control. When a step is due it reads the freezes in force: a freeze holds the
current step (unless the deployment was forced)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from diachronic.ci.activities import CIActivities
    from diachronic.ci.contracts import (
        ROLLOUT_PAUSE_SIGNAL,
        ROLLOUT_PROMOTE_SIGNAL,
        ROLLOUT_RESUME_SIGNAL,
        ROLLOUT_WORKFLOW,
        STATUS_QUERY,
        FlagNameInput,
        RolloutInput,
        RolloutOutcome,
        RolloutResult,
        RolloutRun,
        RolloutState,
        RolloutStatus,
        SetPercentInput,
    )
    from diachronic.ci.freeze import freeze_in_force
    from diachronic.ci.gates import run_gate
    from diachronic.ci.outbox import OUTBOX_SETTLE, Outbox
    from diachronic.ci.planner import gate, rollout
    from diachronic.ci.planner.freeze import Freeze
    from diachronic.ci.planner.notifications import Progress, notifications
    from diachronic.ci.steps import history_is_long, run_step
    from diachronic.contracts import RolloutStep, VersionInfo
    from diachronic.errors import ConcurrentEdit

MAX_HISTORY = 200
FREEZE_PATCH = "rollout-holds-during-freeze"  # histories recorded before it never read the freezes


class FlagSteps:
    """The rollout's two steps on the version's flag, shared with the CI's initial deployment: read it, and write
    the general percentage on the value read."""

    def __init__(self, version: VersionInfo, budget_s: float) -> None:
        self.version = version
        self.budget_s = budget_s

    async def observe(self) -> rollout.TrafficObservation:
        reading = await run_step(
            CIActivities.read_version_flag,
            FlagNameInput(flag_name=self.version.flag_name, workflow_name=self.version.workflow_name),
            budget_s=self.budget_s,
        )
        return rollout.observe_flag(reading.flag)

    async def write(self, percent: int, expected: int) -> bool:
        """True once written; False when the flag no longer held ``expected`` (a human edit: nothing written)."""
        try:
            await run_step(
                CIActivities.set_traffic_percent,
                SetPercentInput(flag_name=self.version.flag_name, percent=percent, expected=expected),
                budget_s=self.budget_s,
            )
        except ApplicationError as error:
            if error.type == ConcurrentEdit.name:
                workflow.logger.warning("%s: %s", self.version.flag_name, error.message)
                return False
            raise
        return True


class StepRunner:
    """The step machine executed: carries ``RolloutState``, asks ``planner.rollout.plan_rollout`` and carries out
    START (hold what the flag holds) and WRITE (on the value read); answers every other plan to its caller.
    ``freezes`` reads the freeze in force when a step is due (none given: nothing holds a step)."""

    def __init__(
        self,
        flag: FlagSteps,
        steps: Sequence[RolloutStep],
        poll_interval_s: float,
        state: RolloutState,
        *,
        gate_every_step: bool = False,
        freezes: Callable[[], Awaitable[Freeze | None]] | None = None,
        force_reason: str | None = None,
    ):
        self.flag = flag
        self.steps = tuple(steps)
        self.poll_interval_s = poll_interval_s
        self.state = state
        self.gate_every_step = gate_every_step
        self.freezes = freezes
        self.force_reason = force_reason

    def _snapshot(self, observed: rollout.TrafficObservation, freeze: Freeze | None = None) -> rollout.RolloutSnapshot:
        state = self.state
        return rollout.RolloutSnapshot(
            steps=self.steps,
            observed=observed,
            now=workflow.now(),
            poll_interval_s=self.poll_interval_s,
            started=state.started,
            percent=state.percent,
            step_index=state.step_index,
            step_started_at=state.step_started_at,
            resumed_at=state.resumed_at,
            paused=state.paused,
            promote=state.promote,
            gate_every_step=self.gate_every_step,
            gated_through=state.gated_through,
            freeze=freeze,
            force_reason=self.force_reason,
        )

    def _hold(self, percent: int, step_index: int) -> None:
        """The flag holds ``percent`` (written, or found at the start); the next step begins now."""
        self.state.started = True
        self.state.percent = percent
        self.state.step_index = step_index
        self.state.step_started_at = workflow.now()
        self.state.history = [*self.state.history, (workflow.now(), percent)][-MAX_HISTORY:]

    async def advance(self, observed: rollout.TrafficObservation) -> rollout.RolloutPlan:
        """One turn of the machine on what the flag holds now. After a WRITE (done, or refused because the flag
        changed) the caller looks at the flag again before the next turn."""
        plan = rollout.plan_rollout(self._snapshot(observed))
        if plan.action is rollout.RolloutAction.START:
            assert plan.percent is not None and plan.step_index is not None
            self._hold(plan.percent, plan.step_index)
            self.state.gated_through = plan.step_index  # the CI ran the gate before the first step it writes
            plan = rollout.plan_rollout(self._snapshot(observed))
        if plan.action is rollout.RolloutAction.WRITE and not self.state.promote and self.freezes is not None:
            plan = rollout.plan_rollout(self._snapshot(observed, await self.freezes()))  # a step is due
        self.state.frozen = plan.freeze if plan.action is rollout.RolloutAction.HOLD else None
        if plan.action is rollout.RolloutAction.WRITE:
            assert plan.percent is not None and plan.expected is not None and plan.step_index is not None
            if await self.flag.write(plan.percent, plan.expected):
                self._hold(plan.percent, plan.step_index)
                self.state.overrode_freeze = self.state.overrode_freeze or plan.freeze
        return plan

    def stopped(self, reason: rollout.RolloutStopReason, observed: rollout.TrafficObservation) -> RolloutResult:
        self.state.stop_reason = reason.value
        self.state.stop_detail = rollout.stop_detail(
            reason, self.flag.version.flag_name, observed.percent, self.state.percent
        )
        workflow.logger.warning(self.state.stop_detail)
        return RolloutResult(
            outcome=RolloutOutcome.STOPPED,
            percent=observed.percent if observed.percent is not None else self.state.percent,
            reason=self.state.stop_reason,
            detail=self.state.stop_detail,
        )


@workflow.defn(name=ROLLOUT_WORKFLOW)
class RolloutWorkflow:
    @workflow.init
    def __init__(self, run: RolloutRun) -> None:
        self.input: RolloutInput = run.input
        self.state: RolloutState = run.state or RolloutState()
        self.flag = FlagSteps(run.input.to_version, run.input.step_timeout_s)
        every_step = run.input.gate is not None and run.input.gate.every_step
        self.runner = StepRunner(
            self.flag,
            run.input.steps,
            run.input.poll_interval_s,
            self.state,
            gate_every_step=every_step,
            freezes=self._freeze_in_force,
            force_reason=run.input.force_reason,
        )
        self._wake = False
        self._slept_once = False
        self.outbox = Outbox(self.state.outbox)
        self._told = self._progress()

    async def _freeze_in_force(self) -> Freeze | None:
        """A run recorded before this check existed never read the freezes: it replays as recorded."""
        if not workflow.patched(FREEZE_PATCH):
            return None
        return await freeze_in_force(self.input.workflow_name)

    def _progress(self) -> Progress:
        return Progress(percent=self.state.percent, paused=self.state.paused, pauses=self.state.pauses)

    def _tell(self) -> None:
        """Publish what the planner says the change since the last look produces (steps, pauses); the end of the
        deployment (an edit by hand included) is the CI's to tell."""
        now = self._progress()
        if self.input.report is not None:
            self.outbox.add(notifications(self.input.report, self._told, now, now=workflow.now()))
        self._told = now

    async def _hand_back(self, result: RolloutResult) -> RolloutResult:
        """The end: tell it, let the publication in flight end, leave the rest to the CI."""
        self._tell()
        await self.outbox.settle(OUTBOX_SETTLE)
        return result.model_copy(
            update={
                "unpublished": list(self.outbox.pending),
                "overrode_freeze": self.state.overrode_freeze,
                "gate": self.state.gate,
            }
        )

    @workflow.signal(name=ROLLOUT_PAUSE_SIGNAL)
    def pause(self) -> None:
        if not self.state.paused:
            self.state.pauses += 1
        self.state.paused = True
        self._wake = True

    @workflow.signal(name=ROLLOUT_RESUME_SIGNAL)
    def resume(self) -> None:
        if self.state.paused:
            self.state.paused = False
            self.state.resumed_at = workflow.now()
        self._wake = True

    @workflow.signal(name=ROLLOUT_PROMOTE_SIGNAL)
    def promote(self) -> None:
        self.state.promote = True
        self._wake = True

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> RolloutStatus:
        steps = self.input.steps
        index = self.state.step_index
        next_step = steps[index] if index < len(steps) and self.state.stop_reason is None else None
        next_at = None
        if next_step is not None and self.state.step_started_at is not None and not self.state.paused:
            next_at = rollout.step_deadline(next_step, self.state.step_started_at, self.state.resumed_at)
        return RolloutStatus(
            percent=self.state.percent,
            step_index=index,
            steps=steps,
            next_percent=next_step.percent if next_step else None,
            next_step_at=next_at,
            paused=self.state.paused,
            stop_reason=self.state.stop_reason,
            stop_detail=self.state.stop_detail,
            history=self.state.history,
            gate=self.state.gate,
            frozen=self.state.frozen,
        )

    def _should_continue_as_new(self) -> bool:
        """Only after this run has slept once: a fresh run never hands over before doing any work."""
        if not self._slept_once:
            return False
        return history_is_long(self.input.continue_as_new_after)

    @workflow.run
    async def run(self, run: RolloutRun) -> RolloutResult:
        self.outbox.start()
        try:
            while True:
                observed = await self.flag.observe()
                plan = await self.runner.advance(observed)
                self._tell()
                if plan.action is rollout.RolloutAction.STOP:
                    assert plan.stop is not None
                    return await self._hand_back(self.runner.stopped(plan.stop, observed))
                if plan.action is rollout.RolloutAction.COMPLETE:
                    completed = RolloutResult(outcome=RolloutOutcome.COMPLETED, percent=self.state.percent)
                    return await self._hand_back(completed)
                if plan.action is rollout.RolloutAction.GATE:
                    assert plan.step_index is not None
                    if (aborted := await self._gate(plan.step_index)) is not None:
                        return await self._hand_back(aborted)
                if plan.action in (rollout.RolloutAction.WAIT, rollout.RolloutAction.HOLD):
                    assert plan.wake_at is not None
                    if self._should_continue_as_new():
                        await self.outbox.settle(OUTBOX_SETTLE)
                        await workflow.wait_condition(workflow.all_handlers_finished)
                        workflow.continue_as_new(RolloutRun(input=self.input, state=self.state))
                    await self._sleep_until(plan.wake_at)
        except asyncio.CancelledError:
            self.state.stop_reason = "Cancelled"
            raise

    async def _gate(self, step_index: int) -> RolloutResult | None:
        """The gate before ``step_index``: None when it passed (the step is written next), else the aborted end."""
        options, started = self.input.gate, self.input.deployment_started
        assert options is not None and started is not None
        verdict = await run_gate(
            options,
            workflow_name=self.input.workflow_name,
            task_queue=self.input.to_version.task_queue,
            step_index=step_index,
            deployment_started=started,
            on_run=lambda run: setattr(self.state, "gate", run),
        )
        if verdict.action is gate.GateAction.PROCEED:
            self.state.gated_through = step_index
            return None
        assert verdict.reason is not None
        self.state.stop_reason, self.state.stop_detail = verdict.reason.value, verdict.detail
        return RolloutResult(
            outcome=RolloutOutcome.ABORTED,
            percent=self.state.percent,
            reason=verdict.reason.value,
            detail=verdict.detail,
        )

    async def _sleep_until(self, wake_at: datetime) -> None:
        """Until the planner's next deadline, or earlier when a control arrives."""
        timeout = max((wake_at - workflow.now()).total_seconds(), 0.001)
        self._wake = False
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._wake, timeout=timeout)
        self._slept_once = True
        self._tell()  # a pause or a resume that woke it
