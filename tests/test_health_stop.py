"""The health workflow ends when the CI tells it to stop, also when the stop arrives while it observes and its
history is long enough to continue as new (it used to carry on in a new run that no one would stop: the CI then
waited for it forever)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from temporalio import activity
from temporalio.client import WorkflowContinuedAsNewError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from diachronic.ci.contracts import (
    HEALTH_STOP_SIGNAL,
    HealthInput,
    HealthObservation,
    HealthResult,
    HealthRun,
    ObserveHealthInput,
    VersionHealth,
)
from diachronic.ci.health import HealthWorkflow
from diachronic.versions import version_info


async def test_a_stop_during_an_observation_ends_the_run_instead_of_continuing_as_new(
    time_env: WorkflowEnvironment,
) -> None:
    observing, release = asyncio.Event(), asyncio.Event()
    calls = 0

    @activity.defn(name="observe_health")
    async def observe_health(input: ObserveHealthInput) -> HealthObservation:
        nonlocal calls
        calls += 1
        if calls == 2:  # the second observation: the history is past the threshold by now
            observing.set()
            await release.wait()
        return HealthObservation(
            new=VersionHealth(task_queue=input.new_task_queue), old=VersionHealth(task_queue=input.old_task_queue)
        )

    queue = f"health-{uuid.uuid4()}"
    run = HealthRun(
        input=HealthInput(
            workflow_name="orders",
            from_version=version_info("orders", 0, "v1"),
            to_version=version_info("orders", 1, "v2"),
            since=datetime.now(UTC),
            poll_interval_s=1.0,
            continue_as_new_after=10,
        )
    )
    async with Worker(time_env.client, task_queue=queue, workflows=[HealthWorkflow], activities=[observe_health]):
        handle = await time_env.client.start_workflow(HealthWorkflow.run, run, id=f"health.{queue}", task_queue=queue)
        await observing.wait()
        await handle.signal(HEALTH_STOP_SIGNAL)
        release.set()
        try:
            result = await handle.result(follow_runs=False)
        except WorkflowContinuedAsNewError:
            pytest.fail("the health workflow continued as new after it was told to stop")
    assert result == HealthResult()
    assert calls == 2
