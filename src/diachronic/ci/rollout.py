"""The rollout workflow: raise the share of new starts routed to the new version, step by step, and step aside
the moment a human changes the percentage (the safety valve, and the fast-forward)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow

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
    from diachronic.ci.planner import rollout
    from diachronic.ci.planner.schedule import MAX_PERCENT
    from diachronic.ci.steps import call, history_is_long

MAX_HISTORY = 200


@workflow.defn(name=ROLLOUT_WORKFLOW)
class RolloutWorkflow:
    @workflow.init
    def __init__(self, run: RolloutRun) -> None:
        self.input: RolloutInput = run.input
        self.state: RolloutState = run.state or RolloutState()
        self._wake = False
        self._slept_once = False

    @workflow.signal(name=ROLLOUT_PAUSE_SIGNAL)
    def pause(self) -> None:
        self.state.paused = True
        self._wake = True

    @workflow.signal(name=ROLLOUT_RESUME_SIGNAL)
    def resume(self) -> None:
        if self.state.paused:
            self.state.paused = False
            self.state.step_started_at = workflow.now()  # the paused step waits its full time again
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
            next_at = self.state.step_started_at + timedelta(seconds=next_step.wait_s)
        return RolloutStatus(
            percent=self.state.percent,
            step_index=index,
            steps=steps,
            next_percent=next_step.percent if next_step else None,
            next_step_at=next_at,
            paused=self.state.paused,
            stop_reason=self.state.stop_reason,
            stop_detail=self.state.stop_detail,
            last_error=self.state.last_error,
            history=self.state.history,
        )

    def _record_wait(self, reason: str | None) -> None:
        self.state.last_error = reason

    async def _observe(self) -> rollout.TrafficObservation:
        reading = await call(
            CIActivities.read_version_flag,
            FlagNameInput(flag_name=self.input.to_version.flag_name, workflow_name=self.input.workflow_name),
            on_wait=self._record_wait,
        )
        return rollout.observe_flag(reading.flag)

    async def _apply(self, percent: int) -> None:
        await call(
            CIActivities.set_traffic_percent,
            SetPercentInput(flag_name=self.input.to_version.flag_name, percent=percent),
            on_wait=self._record_wait,
        )
        self.state.percent = percent
        self.state.history = [*self.state.history, (workflow.now(), percent)][-MAX_HISTORY:]

    def _stop(self, reason: rollout.RolloutStopReason, observed: rollout.TrafficObservation) -> RolloutResult:
        self.state.stop_reason = reason.value
        self.state.stop_detail = (
            f"All other traffic of {self.input.to_version.flag_name} is {observed.percent}% "
            f"but the rollout last set {self.state.percent}%: a human changed it, the rollout stopped"
            if reason is rollout.RolloutStopReason.HUMAN_EDIT
            else f"{reason.value} on {self.input.to_version.flag_name}: the rollout stopped"
        )
        workflow.logger.warning(self.state.stop_detail)
        return RolloutResult(
            outcome=RolloutOutcome.STOPPED,
            percent=observed.percent if observed.percent is not None else self.state.percent,
            reason=self.state.stop_reason,
            detail=self.state.stop_detail,
        )

    def _should_continue_as_new(self) -> bool:
        """Only after this run has slept once: a fresh run never hands over before doing any work."""
        if not self._slept_once:
            return False
        return history_is_long(self.input.continue_as_new_after)

    @workflow.run
    async def run(self, run: RolloutRun) -> RolloutResult:
        steps = self.input.steps
        if not self.state.history:
            # Start from what the flag holds (0 for a new version): steps at or below it are already behind us.
            first = await self._observe()
            start = first.percent if first.percent is not None else 0
            if (reason := rollout.check_traffic(first, start)) is not None:
                return self._stop(reason, first)
            self.state.percent = start
            self.state.history = [(workflow.now(), start)]
            while self.state.step_index < len(steps) and steps[self.state.step_index].percent <= start:
                self.state.step_index += 1
        try:
            while self.state.step_index < len(steps):
                step = steps[self.state.step_index]
                if self.state.step_started_at is None:
                    self.state.step_started_at = workflow.now()
                while True:
                    observed = await self._observe()
                    if (reason := rollout.check_traffic(observed, self.state.percent)) is not None:
                        return self._stop(reason, observed)
                    if self.state.promote:
                        await self._apply(MAX_PERCENT)
                        self.state.step_index = len(steps)
                        break
                    deadline = self.state.step_started_at + timedelta(seconds=step.wait_s)
                    now = workflow.now()
                    if not self.state.paused and now >= deadline:
                        await self._apply(step.percent)
                        self.state.step_index += 1
                        self.state.step_started_at = None
                        break
                    if self._should_continue_as_new():
                        await workflow.wait_condition(workflow.all_handlers_finished)
                        workflow.continue_as_new(RolloutRun(input=self.input, state=self.state))
                    await self._sleep_until(deadline, now)
        except asyncio.CancelledError:
            self.state.stop_reason = "Cancelled"
            raise
        return RolloutResult(outcome=RolloutOutcome.COMPLETED, percent=self.state.percent)

    async def _sleep_until(self, deadline: datetime, now: datetime) -> None:
        """Poll the flag every ``poll_interval_s`` (a hand edit is noticed that fast); wake early on a control."""
        remaining = max((deadline - now).total_seconds(), 0.0)
        timeout = self.input.poll_interval_s if self.state.paused else min(self.input.poll_interval_s, remaining)
        self._wake = False
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._wake, timeout=max(timeout, 0.001))
        self._slept_once = True
