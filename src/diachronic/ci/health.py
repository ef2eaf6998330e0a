"""The health workflow (type ``health``, id ``health.<workflowName>``): from the first traffic to the new version until
the deployment ends, it reads both versions every poll interval and ends the moment a rule fires, with the
evidence as its result; the CI workflow then aborts the deployment. When the deployment ends otherwise, the CI
signals it to stop (``HEALTH_STOP_SIGNAL``) and it ends healthy. It decides nothing itself: the observation
is an activity (``observe_health``), the verdict ``diachronic.ci.planner.health``."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from diachronic.ci.activities import CIActivities
    from diachronic.ci.contracts import (
        HEALTH_STOP_SIGNAL,
        HEALTH_WORKFLOW,
        STATUS_QUERY,
        HealthInput,
        HealthResult,
        HealthRun,
        HealthState,
        ObserveHealthInput,
    )
    from diachronic.ci.planner import health
    from diachronic.ci.steps import history_is_long, run_step


@workflow.defn(name=HEALTH_WORKFLOW)
class HealthWorkflow:
    @workflow.init
    def __init__(self, run: HealthRun) -> None:
        self.input: HealthInput = run.input
        self.state: HealthState = run.state or HealthState()
        self._slept_once = False
        self._stopped = False

    @workflow.signal(name=HEALTH_STOP_SIGNAL)
    def stop(self) -> None:
        self._stopped = True

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> HealthState:
        return self.state

    @workflow.run
    async def run(self, run: HealthRun) -> HealthResult:
        new, old = self.input.to_version, self.input.from_version
        while not self._stopped:
            observed = await run_step(
                CIActivities.observe_health,
                ObserveHealthInput(
                    workflow_name=self.input.workflow_name,
                    new_task_queue=new.task_queue,
                    old_task_queue=old.task_queue,
                    flag_name=new.flag_name,
                    since=self.input.since,
                ),
                budget_s=self.input.step_timeout_s,
                attempt_timeout=timedelta(seconds=60),
            )
            now = workflow.now()
            self.state.polls += 1
            self.state.steps = health.record_step(self.state.steps, observed, now)
            verdict = health.judge_health(observed, self.input.thresholds, now)
            if verdict.rule is not None:
                workflow.logger.warning("health of %s: %s", new.task_queue, verdict.detail)
                self.state.breach = verdict
                return HealthResult(breach=verdict)
            if self._stopped:
                break  # told to stop while it observed: a new run would not know, and nobody would stop it
            if self._slept_once and history_is_long(self.input.continue_as_new_after):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(HealthRun(input=self.input, state=self.state))
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: self._stopped, timeout=self.input.poll_interval_s)
            self._slept_once = True
        return HealthResult()
