"""The gates end to end on the real dev server (docs/gates.md): each test fails if its gate is removed. Order is read
from the CI's own Temporal history, never from the clock."""

from __future__ import annotations

import json
from typing import Any

import pytest
from examples.sleeper import Sleeper
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.worker import Worker
from tests.ci_helpers import CIHarness, ci_end, deploy_initial, event, fast, serving, start_old
from tests.conditions import eventually
from tests.gate_workflows import GATE_FAIL, Crasher, GateFail

from diachronic.ci import client as ci
from diachronic.ci.contracts import GateOptions, GateStage, HealthRule, Phase, rollout_workflow_id
from diachronic.ci.planner.health import HEALTH_CHECK_FAILED
from diachronic.ci.planner.readiness import WORKERS_NOT_READY
from diachronic.ci.planner.rollback import ROLLED_BACK
from diachronic.ci.planner.schedule import parse_steps
from diachronic.contracts import ci_workflow_id
from diachronic.flags.evaluation import general_percent
from diachronic.signaler import route, start_routed
from diachronic.versions import task_queue

pytestmark = pytest.mark.devserver
QUICK = "50@0.3s,100@0.3s"
HELD = "50@0.3s,100@1h"  # a first step, then a long one: only a gate ends the deployment before the test's wait does


async def flag_percents(h: CIHarness, wf: str) -> list[tuple[str, int | None]]:
    return [
        (f.info.version_id, general_percent(f)) for f in await h.flags.list_version_flags(wf, include_archived=True)
    ]


async def activity_inputs(h: CIHarness, workflow_id: str, activity: str) -> list[dict[str, Any]]:
    """The inputs of every ``activity`` the workflow's latest run scheduled, in the order of its history."""
    history = await h.client.get_workflow_handle(workflow_id).fetch_history()
    return [
        json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity
    ]


async def phase_is(h: CIHarness, wf: str, phase: Phase) -> bool:
    return (await ci.status(h.client, wf)).phase is phase


# ----------------------------------------------------------------------------------------------- readiness


async def test_a_version_with_no_worker_gets_no_traffic_and_fails_with_workers_not_ready(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf, "v1")
    queue = task_queue(wf, "v2")
    await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(readyTimeoutS=1.0))
    deployments, failure = await ci_end(h, wf)
    assert deployments[-1]["phase"] == "failed" and deployments[-1]["end"]["reason"] == WORKERS_NOT_READY
    assert failure is not None and WORKERS_NOT_READY in failure
    assert queue in deployments[-1]["end"]["detail"]
    # No flag was created for v2 (its dark strategy would route isTest traffic), nothing changed for v1.
    assert await flag_percents(h, wf) == [("v1", 100)]
    looks = await activity_inputs(h, ci_workflow_id(wf), "observe_workers")
    assert looks and all(look["taskQueue"] == queue for look in looks)
    assert await activity_inputs(h, ci_workflow_id(wf), "apply_version_flag") == []


async def test_status_says_it_waits_for_workers_and_nothing_is_created_meanwhile(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf, "v1")
    queue = task_queue(wf, "v2")
    await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps(QUICK)))
    status = await eventually(lambda: ci.status(h.client, wf), lambda s: s.gates is not None and s.gates.waiting_for)
    assert status.gates is not None and status.gates.stage is GateStage.WAITING_FOR_WORKERS
    assert status.gates.waiting_for == f"waiting for workers on {queue}"
    assert await flag_percents(h, wf) == [("v1", 100)]
    async with serving(h.client, wf, "v1", "v2"):  # the worker comes: the deployment goes on
        deployments, failure = await ci_end(h, wf)
    assert failure is None and deployments[-1]["phase"] == "completed"
    assert deployments[-1]["gates"]["stage"] == GateStage.READY.value
    assert await flag_percents(h, wf) == [("v2", 100), ("v1", 100)]


# ----------------------------------------------------------------------------------------------- gate workflow


async def test_a_failing_gate_aborts_before_step_1(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf, "v1")
    gate = GateOptions(workflow_type=GATE_FAIL, input={"path": "/checkout"})
    async with Worker(h.client, task_queue=task_queue(wf, "v2"), workflows=[Sleeper, GateFail]):
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(gate=gate, steps=parse_steps(HELD)))
        deployments, _ = await ci_end(h, wf)
    [record] = deployments
    assert record["phase"] == "aborted" and record["end"]["reason"] == "GateFailed"
    assert "smoke test failed: checkout answered 500" in record["end"]["detail"]
    [run] = record["gates"]["gateRuns"]
    assert run["stepIndex"] == 0 and run["passed"] is False
    # Before step 1: v2 never got a flag, so no traffic at all (dark included).
    assert await flag_percents(h, wf) == [("v1", 100)]
    assert await activity_inputs(h, ci_workflow_id(wf), "apply_version_flag") == []


# ----------------------------------------------------------------------------------------------- health


async def test_a_broken_version_is_aborted_by_its_health_with_nothing_lost(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf, "v1")
    async with (
        serving(h.client, wf, "v1"),
        Worker(h.client, task_queue=task_queue(wf, "v2"), workflows=[Crasher]),  # v2: every workflow task fails
    ):
        runs = list(await start_old(h, wf, 4))
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps(HELD)))
        await eventually(lambda: flag_percents(h, wf), lambda p: ("v2", 50) in p, what="v2 at 50 %")
        runs += await start_new(h, wf, reaching="v2", count=2)  # new starts, as the signaler routes them
        await eventually(lambda: phase_is(h, wf, Phase.ABORTED), timeout=120, what="the health gate aborts v2")
        deployments, _ = await ci_end(h, wf)
        [record] = deployments
        assert record["end"]["reason"] == HEALTH_CHECK_FAILED and record["end"]["by"] == "gates"
        breach = record["gates"]["breach"]
        assert breach["rule"] == HealthRule.TASK_PROBLEMS.value
        assert breach["new"]["taskProblems"] >= 1 and set(breach["new"]["examples"]) <= set(runs)
        assert breach["old"]["taskQueue"] == task_queue(wf, "v1")
        # New starts go back to v1, and no workflow is lost: the ones on v2 are stuck there, still running.
        assert ("v2", 0) in await flag_percents(h, wf)
        assert {(await route(h.flags, wf, f"later-{i}")).version_id for i in range(50)} == {"v1"}
        for workflow_id in runs:
            described = await h.client.get_workflow_handle(workflow_id).describe()
            assert described.status is WorkflowExecutionStatus.RUNNING
    # The abort's one write, on the value it read: v2 had its first step's 50 % when its health was found broken.
    assert await activity_inputs(h, ci_workflow_id(wf), "set_traffic_percent") == [
        {"flagName": record["toVersion"]["flagName"], "percent": 0, "expected": 50}
    ]


async def start_new(h: CIHarness, wf: str, *, reaching: str, count: int) -> list[str]:
    """New starts routed as the signaler routes them, until ``count`` of them reached version ``reaching``."""
    started, reached = [], 0
    for i in range(1000):
        new = await start_routed(h.client, h.flags, workflow_name=wf, workflow_id=f"{wf}-new-{i}", args=[{"i": i}])
        started.append(new.workflow_id)
        reached += new.version_id == reaching
        if reached == count:
            return started
    raise AssertionError(f"no new start reached {reaching}")


# ----------------------------------------------------------------------------------------------- roll-back


async def test_a_rollback_puts_100_percent_back_in_one_step(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf, "v1")
    async with serving(h.client, wf, "v1", "v2"):
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps(HELD)))
        await eventually(lambda: flag_percents(h, wf), lambda p: ("v2", 50) in p, what="v2 at its first step")
        await ci.rollback(h.client, wf, reason="checkout errors")
        deployments, _ = await ci_end(h, wf)
    [record] = deployments
    assert record["phase"] == "aborted" and record["end"]["reason"] == ROLLED_BACK
    assert record["end"]["note"] == "checkout errors"
    [write] = await activity_inputs(h, ci_workflow_id(wf), "set_traffic_percent")  # one write: 100 % back to v1
    assert (write["percent"], write["expected"]) == (0, 50)
    assert {(await route(h.flags, wf, f"id-{i}")).version_id for i in range(50)} == {"v1"}


async def test_a_redeploy_of_a_recently_live_version_routes_back_at_once_and_leaves_the_workflows(
    h: CIHarness, wf: str
) -> None:
    await deploy_initial(h, wf, "v1")
    async with serving(h.client, wf, "v1", "v2"):
        runs = await start_old(h, wf, 3)
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps(QUICK)))
        await ci.deploy(h.client, h.task_queue, event(wf, "v1"), fast())  # queued: v1 is live until v2 completes
        deployments, _ = await ci_end(h, wf)
        # The workflows v2's migration moved stay on v2 (no --migrate-back): a roll-back does not move them again.
        for workflow_id in runs:
            assert (await h.client.get_workflow_handle(workflow_id).describe()).task_queue == task_queue(wf, "v2")
    assert [(d["toVersion"]["versionId"], d["phase"]) for d in deployments] == [
        ("v2", "completed"),
        ("v1", "completed"),
    ]
    assert deployments[1]["gates"]["redeployRollback"] is True
    assert deployments[1]["migration"] is None and deployments[1]["cleanupWorkflowId"] is not None
    # v1's new flag got 100 % of new starts in one write (not the default schedule).
    [write] = await activity_inputs(h, rollout_workflow_id(wf), "set_traffic_percent")
    assert write["flagName"] == deployments[1]["toVersion"]["flagName"] and write["percent"] == 100
    assert {(await route(h.flags, wf, f"id-{i}")).version_id for i in range(50)} == {"v1"}
