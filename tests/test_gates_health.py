"""The health workflow on the real dev server: it watches both versions and ends with the evidence when a rule fires."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from examples.sleeper import FINISH_SIGNAL, Sleeper
from temporalio.client import WorkflowHandle
from temporalio.worker import Worker
from tests.ci_helpers import CIHarness
from tests.conditions import eventually
from tests.gate_workflows import Crasher, Doomed

from diachronic.ci.contracts import (
    STATUS_QUERY,
    HealthInput,
    HealthResult,
    HealthRule,
    HealthRun,
    HealthState,
    HealthThresholds,
    VersionHealth,
    health_workflow_id,
)
from diachronic.ci.health import HealthWorkflow
from diachronic.versions import version_info

pytestmark = pytest.mark.devserver


async def watch(h: CIHarness, wf: str, **thresholds: float) -> WorkflowHandle[HealthWorkflow, HealthResult]:
    run = HealthRun(
        input=HealthInput(
            workflow_name=wf,
            from_version=version_info(wf, 0, "v1"),
            to_version=version_info(wf, 1, "v2"),
            thresholds=HealthThresholds(**thresholds),  # type: ignore[arg-type]
            since=datetime.now(UTC),
            poll_interval_s=0.2,
        )
    )
    return await h.client.start_workflow(HealthWorkflow.run, run, id=health_workflow_id(wf), task_queue=h.task_queue)


async def test_stuck_workflows_on_the_new_version_end_it_with_the_evidence(h: CIHarness, wf: str) -> None:
    async with (
        Worker(h.client, task_queue=f"{wf}-v1", workflows=[Sleeper]),
        Worker(h.client, task_queue=f"{wf}-v2", workflows=[Crasher]),
    ):
        handle = await watch(h, wf)
        old = await h.client.start_workflow(wf, id=f"{wf}-old", task_queue=f"{wf}-v1")
        stuck = await h.client.start_workflow(wf, id=f"{wf}-stuck", task_queue=f"{wf}-v2")
        result = await handle.result()
        await old.signal(FINISH_SIGNAL)
        await stuck.terminate("test over")
    breach = result.breach
    assert (breach.rule, breach.new, breach.old) == (
        HealthRule.TASK_PROBLEMS,
        VersionHealth(task_queue=f"{wf}-v2", task_problems=1, examples=[stuck.id]),
        VersionHealth(task_queue=f"{wf}-v1", task_problems=0),
    )
    state = await handle.query(STATUS_QUERY, result_type=HealthState)
    assert state.breach == breach and state.steps[-1].new == breach.new


async def test_a_failure_rate_above_the_threshold_ends_it(h: CIHarness, wf: str) -> None:
    async with Worker(h.client, task_queue=f"{wf}-v2", workflows=[Doomed]):
        handle = await watch(h, wf, min_sample=3)
        for i in range(3):
            await h.client.start_workflow(wf, id=f"{wf}-{i}", task_queue=f"{wf}-v2")
        result = await handle.result()
    assert (result.breach.rule, result.breach.new.closed, result.breach.new.failed) == (
        HealthRule.FAILURE_RATE,
        3,
        3,
    )
    assert sorted(result.breach.new.examples) == [f"{wf}-{i}" for i in range(3)]


async def test_a_healthy_version_is_watched_until_the_deployment_ends_it(h: CIHarness, wf: str) -> None:
    async with Worker(h.client, task_queue=f"{wf}-v2", workflows=[Sleeper]):
        handle = await watch(h, wf, min_sample=1)
        done = await h.client.start_workflow(wf, id=f"{wf}-done", task_queue=f"{wf}-v2")
        await done.signal(FINISH_SIGNAL)

        async def watched_the_close() -> HealthState | None:
            state = await handle.query(STATUS_QUERY, result_type=HealthState)
            return state if state.steps and state.steps[-1].new.closed == 1 else None

        state = await eventually(watched_the_close, what="the completed run counted")
        assert state.breach is None
        await handle.cancel()
