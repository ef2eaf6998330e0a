"""The rollout workflow on the time-skipping server: long schedules run in virtual time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment
from tests.ci_helpers import CIHarness, TimeSkippingActivities, ci_harness

from diachronic.ci.contracts import (
    ROLLOUT_PAUSE_SIGNAL,
    ROLLOUT_PROMOTE_SIGNAL,
    ROLLOUT_RESUME_SIGNAL,
    RolloutInput,
    RolloutOutcome,
    RolloutResult,
    RolloutRun,
)
from diachronic.ci.planner import schedule
from diachronic.ci.rollout import RolloutWorkflow
from diachronic.contracts import RolloutStep, VersionInfo
from diachronic.flags.evaluation import general_percent


@pytest.fixture
async def h(time_env: WorkflowEnvironment, data_dir: Path) -> AsyncIterator[CIHarness]:
    async with ci_harness(
        time_env.client, data_dir, f"ci-{uuid.uuid4()}", activities_class=TimeSkippingActivities
    ) as harness:
        yield harness


async def activities_scheduled(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The activities the workflow scheduled, in order, read from its Temporal history."""
    history = await handle.fetch_history()
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


async def new_version(h: CIHarness) -> VersionInfo:
    await h.flags.apply_version_flag("wf", "v1")
    await h.flags.set_general_percent("workflow.wf.seqId.000.version.v1", 100)
    return await h.flags.apply_version_flag("wf", "v2")


async def start_rollout(
    h: CIHarness, version: VersionInfo, steps: list[RolloutStep], poll: float = 10.0
) -> WorkflowHandle[Any, RolloutResult]:
    run = RolloutRun(input=RolloutInput(workflow_name="wf", to_version=version, steps=steps, poll_interval_s=poll))
    return await h.client.start_workflow(RolloutWorkflow.run, run, id=f"r-{uuid.uuid4()}", task_queue=h.task_queue)


async def test_default_schedule_takes_ten_virtual_minutes_and_ends_at_100(h: CIHarness) -> None:
    version = await new_version(h)
    handle = await start_rollout(h, version, schedule.default_steps())
    result = await handle.result()
    assert result == RolloutResult(outcome=RolloutOutcome.COMPLETED, percent=100)
    status = await handle.query(RolloutWorkflow.status)
    assert [p for _, p in status.history] == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    elapsed = status.history[-1][0] - status.history[0][0]
    assert 600 <= elapsed.total_seconds() < 700
    [flag] = [f for f in await h.flags.list_version_flags("wf") if f.info.version_id == "v2"]
    assert general_percent(flag) == 100


async def test_uneven_steps_still_reach_the_maximum(h: CIHarness) -> None:
    version = await new_version(h)
    handle = await start_rollout(h, version, schedule.default_steps(30, 3600))
    assert (await handle.result()).percent == 100
    status = await handle.query(RolloutWorkflow.status)
    assert [p for _, p in status.history] == [0, 30, 60, 90, 100]


async def test_promote_jumps_to_100_without_waiting(h: CIHarness) -> None:
    version = await new_version(h)
    handle = await start_rollout(h, version, schedule.parse_steps("50@1h,100@1h"), poll=60)
    await handle.signal(ROLLOUT_PROMOTE_SIGNAL)
    result = await handle.result()
    status = await handle.query(RolloutWorkflow.status)
    assert result.percent == 100 and [p for _, p in status.history] == [0, 100]
    assert (status.history[-1][0] - status.history[0][0]).total_seconds() < 3600


async def test_paused_rollout_holds_its_percentage_until_resumed(h: CIHarness, time_env: WorkflowEnvironment) -> None:
    version = await new_version(h)
    handle = await start_rollout(h, version, schedule.parse_steps("50@1m,100@1m"), poll=60)
    await handle.signal(ROLLOUT_PAUSE_SIGNAL)
    await time_env.sleep(600)  # ten virtual minutes: the schedule would have finished twice
    status = await handle.query(RolloutWorkflow.status)
    assert status.paused and status.percent == 0 and status.next_step_at is None
    await handle.signal(ROLLOUT_RESUME_SIGNAL)
    assert (await handle.result()).percent == 100


async def test_a_rollout_that_finds_a_hand_edited_flag_writes_nothing(h: CIHarness) -> None:
    version = await new_version(h)
    await h.flags.set_general_percent(version.flag_name, 100)  # already fast-forwarded by hand
    handle = await start_rollout(h, version, schedule.default_steps())
    result = await handle.result()
    assert result.outcome is RolloutOutcome.COMPLETED and result.percent == 100  # 100 % is the end: nothing to do
    assert await activities_scheduled(handle) == ["read_version_flag"]  # it looked, and wrote nothing


async def test_a_hand_edit_during_the_rollout_stops_it_and_it_writes_nothing_after(
    h: CIHarness, time_env: WorkflowEnvironment
) -> None:
    version = await new_version(h)
    handle = await start_rollout(h, version, schedule.parse_steps("20@60s,40@1h,100@1h"), poll=60)
    while (await handle.query(RolloutWorkflow.status)).percent != 20:
        await time_env.sleep(30)
    await h.flags.set_general_percent(version.flag_name, 70)  # a human takes over
    result = await handle.result()
    assert result.outcome is RolloutOutcome.STOPPED and result.reason == "RolloutPercentNotExpected"
    writes = [a for a in await activities_scheduled(handle) if a == "set_traffic_percent"]
    assert writes == ["set_traffic_percent"]  # the 20 % step, and nothing after the edit
    [flag] = [f for f in await h.flags.list_version_flags("wf") if f.info.version_id == "v2"]
    assert general_percent(flag) == 70


async def test_a_deleted_general_strategy_stops_the_rollout_with_its_reason(h: CIHarness) -> None:
    version = await new_version(h)
    await h.flags.delete_strategy(version.flag_name, "All other traffic")
    handle = await start_rollout(h, version, schedule.default_steps())
    result = await handle.result()
    assert result.outcome is RolloutOutcome.STOPPED and result.reason == "GeneralTrafficStrategyNotFound"


async def test_cancelling_during_an_activity_ends_the_rollout(h: CIHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancel that lands while a step's activity runs must end the workflow, not be retried away."""
    version = await new_version(h)
    entered, release = asyncio.Event(), asyncio.Event()
    real = h.flags.list_version_flags

    async def slow(workflow_name: str, *, include_archived: bool = False) -> list:  # type: ignore[type-arg]
        entered.set()
        await release.wait()
        return await real(workflow_name, include_archived=include_archived)

    monkeypatch.setattr(h.flags, "list_version_flags", slow)
    handle = await start_rollout(h, version, schedule.default_steps())
    await asyncio.wait_for(entered.wait(), 30)
    await handle.cancel()
    release.set()
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), 60)
    assert isinstance(failure.value.cause, CancelledError)
