"""The gates' steps inside the CI's workflows (docs/gates.md): wait for a worker on the new version's task queue,
and run the user's gate workflow on it. They execute the planner's answers (``diachronic.ci.planner.readiness``,
``diachronic.ci.planner.gate``); the reads are activities, the gate a child workflow."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import exceptions, workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from diachronic.ci.activities import CIActivities
    from diachronic.ci.contracts import GateOptions, GateRun, ObserveWorkersInput, gate_workflow_id
    from diachronic.ci.planner import gate, readiness
    from diachronic.ci.steps import failure_message, failure_name, run_step
    from diachronic.metrics import GATE_RESULTS

__all__ = ["await_workers", "count_gate", "run_gate"]


def count_gate(workflow_name: str, gate_name: str, result: str) -> None:
    """``diachronic_gate_results``: counted once, when the workflow decides (never again while it replays)."""
    if not workflow.unsafe.is_replaying():
        GATE_RESULTS.labels(workflow=workflow_name, gate=gate_name, result=result).inc()


async def await_workers(
    task_queue: str,
    *,
    timeout_s: float,
    poll_interval_s: float,
    budget_s: float,
    stopped: Callable[[], bool],
    on_wait: Callable[[str | None], None],
) -> readiness.ReadinessPlan | None:
    """Look until a worker polls ``task_queue`` (PROCEED) or the ready timeout passes (FAIL); None when ``stopped``
    (a human's cancel) ended the wait first. ``on_wait`` gets what status shows meanwhile."""
    since = workflow.now()
    while not stopped():
        observed = await run_step(
            CIActivities.observe_workers, ObserveWorkersInput(task_queue=task_queue), budget_s=budget_s
        )
        plan = readiness.plan_readiness(
            readiness.ReadinessSnapshot(
                task_queue=task_queue,
                pollers=observed.pollers,
                waiting_since=since,
                now=workflow.now(),
                timeout_s=timeout_s,
                poll_interval_s=poll_interval_s,
            )
        )
        if plan.action is not readiness.ReadinessAction.WAIT:
            on_wait(None)
            return plan
        assert plan.wake_at is not None
        on_wait(plan.waiting_for)
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(stopped, timeout=max((plan.wake_at - workflow.now()).total_seconds(), 0.001))
    return None


async def run_gate(
    options: GateOptions,
    *,
    workflow_name: str,
    task_queue: str,
    step_index: int,
    deployment_started: datetime,
    on_run: Callable[[GateRun], None],
) -> gate.GatePlan:
    """Run the gate workflow on ``task_queue`` as a child (it ends with its parent) and judge its outcome."""
    run = GateRun(workflow_id=gate_workflow_id(task_queue, step_index, deployment_started), step_index=step_index)
    on_run(run)
    try:
        await workflow.execute_child_workflow(
            options.workflow_type,
            args=[] if options.input is None else [options.input],
            id=run.workflow_id,
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=options.timeout_s),
            parent_close_policy=ParentClosePolicy.TERMINATE,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
        outcome = gate.GateOutcome(succeeded=True)
    except exceptions.ChildWorkflowError as error:
        cause = error.cause
        outcome = gate.GateOutcome(
            succeeded=False,
            timed_out=isinstance(cause, exceptions.TimeoutError),
            error=f"{failure_name(cause)}: {failure_message(cause)}" if cause is not None else str(error),
        )
    plan = gate.judge_gate(options, step_index, outcome)
    on_run(run.model_copy(update={"passed": plan.action is gate.GateAction.PROCEED, "detail": plan.detail}))
    result = "passed" if outcome.succeeded else "timed_out" if outcome.timed_out else "failed"
    count_gate(workflow_name, "gate", result)
    return plan
