"""``--retire-delay D`` on the real CI workflows (dev server, local worker processes): the old workers stay D after
the old queue drained (status counts down), a roll-back within D keeps them, and once D ran out they go. The
timing is read from the cleanup's own Temporal history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from tests.ci_helpers import CIHarness, deploy_initial, event, fast, finish_ci, serving, start_worker_process
from tests.conditions import eventually

from diachronic.ci import client as ci
from diachronic.ci.planner.retire import LIVE_AGAIN
from diachronic.ci.planner.schedule import parse_steps

pytestmark = pytest.mark.devserver

QUICK = parse_steps("100@0.1s")
HOUR_S = 3600.0


async def test_a_roll_back_within_the_delay_finds_the_old_workers_running_and_keeps_them(h: CIHarness, wf: str) -> None:
    await start_worker_process(h, wf, "v1")
    await deploy_initial(h, wf, "v1")
    async with serving(h.client, wf, "v2"):
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=QUICK, retireDelayS=HOUR_S))
        [record] = (await finish_ci(h, wf))["deployments"]
        assert record["phase"] == "completed" and record["migration"]["handedOff"]  # the queue does not wait
        # The cleanup that took the countdown over shows it once it has looked at the drained queue.
        status = await eventually(lambda: ci.status(h.client, wf), lambda s: s.retire_at is not None, what="countdown")
        assert status.retire_at is not None and status.retire_at > datetime.now(UTC) + timedelta(minutes=30)
        assert [w.running for w in await h.workers.find(wf, "v1")] == [True]
        await ci.deploy(h.client, h.task_queue, event(wf, "v1"), fast(steps=QUICK))  # the roll-back
        [back] = (await finish_ci(h, wf))["deployments"]
        assert back["phase"] == "completed"
        retired = await h.client.get_workflow_handle(record["cleanupWorkflowId"]).result()
    assert (retired["keptWorkers"], retired["deletedWorkers"]) == (LIVE_AGAIN, [])
    assert [w.running for w in await h.workers.find(wf, "v1")] == [True]


async def test_the_old_workers_go_once_the_delay_ran_out(h: CIHarness, wf: str) -> None:
    delay = timedelta(seconds=2)
    await start_worker_process(h, wf, "v1")
    await deploy_initial(h, wf, "v1")
    async with serving(h.client, wf, "v2"):
        options = fast(steps=QUICK, retireDelayS=delay.total_seconds())
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), options)
        [record] = (await finish_ci(h, wf))["deployments"]
        cleanup = h.client.get_workflow_handle(record["cleanupWorkflowId"])
        retired = await cleanup.result()
    assert retired["deletedWorkers"] and await h.workers.find(wf, "v1") == []
    scheduled = [
        (e.event_time.ToDatetime(), e.activity_task_scheduled_event_attributes.activity_type.name)
        async for e in cleanup.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    first_allowed = next(at for at, name in scheduled if name == "find_workers")  # the rule first let them go
    deleted = next(at for at, name in scheduled if name == "delete_workers")
    assert deleted - first_allowed >= delay
