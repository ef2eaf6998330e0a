"""The CI engine end to end on the real Temporal dev server (visibility is needed for migration and cleanup),
with the embedded flag store and local worker processes."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from examples.sleeper import FINISH_SIGNAL
from temporalio.client import Client, WorkflowFailureError
from tests.ci_helpers import (
    CIHarness,
    deploy_initial,
    event,
    fast,
    finish_ci,
    migrate_signals_received,
    serving,
    start_old,
    start_worker_process,
)
from tests.conditions import eventually

from diachronic.ci import client as ci
from diachronic.ci.contracts import CIInput, Phase, RolloutOutcome
from diachronic.ci.planner.schedule import parse_steps
from diachronic.ci.workflow import CIWorkflow
from diachronic.contracts import ci_workflow_id
from diachronic.errors import InvalidInput, NotFound
from diachronic.flags.evaluation import general_percent
from diachronic.signaler import route

pytestmark = pytest.mark.devserver
QUICK = "50@0.3s,100@0.3s"


async def queue_of(client: Client, workflow_id: str) -> str:
    description = await client.get_workflow_handle(workflow_id).describe()
    return description.task_queue


async def test_initial_deployment_routes_everything_and_completes(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf)
    [flag] = await h.flags.list_version_flags(wf)
    assert flag.info.flag_name == f"workflow.{wf}.seqId.000.version.v1"
    assert general_percent(flag) == 100
    status = await ci.status(h.client, wf)
    assert status.phase is Phase.COMPLETED and status.from_version is None
    assert (await route(h.flags, wf, "any-id")).task_queue == f"{wf}-v1"


async def test_migratory_deployment_moves_every_workflow_once_and_retires_the_old_version(
    h: CIHarness, wf: str
) -> None:
    await start_worker_process(h, wf, "v1")
    await deploy_initial(h, wf)
    async with serving(h.client, wf, "v2"):
        runs = await start_old(h, wf, 30)
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps("30@0.3s,60@0.3s,100@0.3s")))
        result = await finish_ci(h, wf)
        [record] = result["deployments"]
        # Exactly once is read from each run's history below; the counter may count a run again after a sweep in
        # which a signal failed (docs/ci.md), never less than once.
        assert record["phase"] == "completed" and record["migration"]["signalled"] >= 30
        for workflow_id, run_id in runs.items():
            assert await queue_of(h.client, workflow_id) == f"{wf}-v2"
            assert await migrate_signals_received(h.client, workflow_id, run_id) == 1
    flags = await h.flags.list_version_flags(wf, include_archived=True)
    assert [(f.info.version_id, f.archived) for f in flags] == [("v2", False), ("v1", True)]
    assert await h.workers.find(wf, "v1") == []  # the old worker process was stopped
    status = await ci.status(h.client, wf)
    assert status.phase is Phase.COMPLETED and status.migration is not None
    assert status.migration.signalled == record["migration"]["signalled"] and status.migration.on_old_queue == 0


async def test_dark_deploy_routes_only_test_traffic_until_continue(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf)
    async with serving(h.client, wf, "v1", "v2"):
        await ci.deploy(h.client, h.task_queue, event(wf, "v2", isDarkDeploy=True), fast(steps=parse_steps(QUICK)))
        await eventually(lambda: _phase(h, wf, Phase.AWAITING_CONTINUE), what="awaiting continue")
        ids = [f"user-{i}" for i in range(50)]
        assert {(await route(h.flags, wf, i)).version_id for i in ids} == {"v1"}
        assert {(await route(h.flags, wf, i, is_test=True)).version_id for i in ids} == {"v2"}
        with pytest.raises(InvalidInput, match="not rolling_out"):
            await ci.control(h.client, wf, "promote")
        assert "rollout starts" in await ci.control(h.client, wf, "continue")
        result = await finish_ci(h, wf)
    assert result["deployments"][0]["phase"] == "completed"
    assert {(await route(h.flags, wf, i)).version_id for i in ids} == {"v2"}


async def test_non_migratory_cleanup_waits_for_old_workflows_then_retires(h: CIHarness, wf: str) -> None:
    await start_worker_process(h, wf, "v1")
    await deploy_initial(h, wf)
    async with serving(h.client, wf, "v2"):
        runs = await start_old(h, wf, 5)
        await ci.deploy(h.client, h.task_queue, event(wf, "v2", isNonMigratory=True), fast(steps=parse_steps(QUICK)))
        result = await finish_ci(h, wf)
        [record] = result["deployments"]
        assert record["phase"] == "completed" and record["migration"] is None
        cleanup = h.client.get_workflow_handle(record["cleanupWorkflowId"])
        # The old version still runs workflows: its worker must stay and its flag must stay live.
        await eventually(lambda: _cleanup_waiting(h, cleanup.id), what="cleanup polling")
        assert [d.running for d in await h.workers.find(wf, "v1")] == [True]
        flags = await h.flags.list_version_flags(wf, include_archived=True)
        assert [(f.info.version_id, f.archived) for f in flags] == [("v2", False), ("v1", False)]
        for workflow_id, run_id in runs.items():
            assert await migrate_signals_received(h.client, workflow_id, run_id) == 0
            await h.client.get_workflow_handle(workflow_id).signal(FINISH_SIGNAL)
        retired = await cleanup.result()
    assert retired["archivedFlag"] == f"workflow.{wf}.seqId.000.version.v1"
    assert await h.workers.find(wf, "v1") == []


async def test_hand_edit_stops_the_rollout_and_migration_follows_the_flag(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf)
    async with serving(h.client, wf, "v1", "v2"):
        await start_old(h, wf, 10)
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps("20@0.3s,40@600s,100@600s")))
        await eventually(lambda: _percent(h, wf, 20), what="first step")
        new_flag = (await h.flags.list_version_flags(wf))[0].info.flag_name
        await h.flags.set_general_percent(new_flag, 100)  # a human fast-forwards
        result = await finish_ci(h, wf)
    [record] = result["deployments"]
    assert record["rollout"]["outcome"] == RolloutOutcome.STOPPED
    assert record["rollout"]["reason"] == "RolloutPercentNotExpected"
    assert record["phase"] == "stopped" and record["migration"]["signalled"] == 10
    status = await ci.status(h.client, wf)
    assert status.last_error is not None and "a human changed it" in status.last_error


async def test_cancel_stops_automation_and_changes_nothing_else(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf)
    async with serving(h.client, wf, "v1", "v2"):
        await start_old(h, wf, 3)
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps("20@0.3s,100@600s")))
        await eventually(lambda: _percent(h, wf, 20), what="first step")
        await ci.control(h.client, wf, "cancel", reason="test")
        result = await finish_ci(h, wf)
    assert result["deployments"][0]["phase"] == "cancelled"
    flags = await h.flags.list_version_flags(wf, include_archived=True)
    assert [(f.info.version_id, general_percent(f), f.archived) for f in flags] == [
        ("v2", 20, False),
        ("v1", 100, False),
    ]
    with pytest.raises(NotFound):
        await ci.control(h.client, wf, "cancel")  # nothing runs any more: a clear error, nothing changes


async def test_abort_routes_new_starts_back_to_the_previous_version(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf)
    async with serving(h.client, wf, "v1", "v2"):
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps("50@0.3s,100@600s")))
        await eventually(lambda: _percent(h, wf, 50), what="first step")
        await ci.control(h.client, wf, "abort")
        result = await finish_ci(h, wf)
    assert result["deployments"][0]["phase"] == "aborted"
    assert {(await route(h.flags, wf, f"id-{i}")).version_id for i in range(50)} == {"v1"}


async def test_an_abort_stops_children_that_continued_as_new(h: CIHarness, wf: str) -> None:
    """A child handle's cancel goes to the run the child started with: once the rollout and the migration continued
    as new it was lost, the CI waited for them forever and never routed back (regression)."""
    await deploy_initial(h, wf)
    async with serving(h.client, wf, "v1", "v2"):
        await start_old(h, wf, 3)
        options = fast(steps=parse_steps("50@0.3s,100@600s"), continueAsNewAfter=10, batchSize=1)
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), options)
        for child in (f"rollout.{wf}", f"migration.{wf}"):
            await eventually(functools.partial(continued_as_new, h.client, child), what=f"{child} continued as new")
        await ci.control(h.client, wf, "abort")
        result = await finish_ci(h, wf)
    assert result["deployments"][0]["phase"] == "aborted"
    assert {(await route(h.flags, wf, f"id-{i}")).version_id for i in range(50)} == {"v1"}


async def test_deployments_queue_in_order_and_duplicates_run_once(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf)
    async with serving(h.client, wf, "v1", "v2", "v3"):
        await start_old(h, wf, 5)
        steps = parse_steps("50@1s,100@1s")
        first = await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=steps))
        second = await ci.deploy(h.client, h.task_queue, event(wf, "v3"), fast(steps=steps))
        again = await ci.deploy(h.client, h.task_queue, event(wf, "v3"), fast(steps=steps))
        current = await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=steps))
        assert (first.position, second.position) == (1, 2) or (first.position, second.position) == (1, 1)
        assert again.position is None and "queued" in again.decision
        assert current.position is None
        status = await ci.status(h.client, wf)
        assert [e.version_id for e in status.queued] == ["v3"]
        result = await finish_ci(h, wf)
    assert [d["toVersion"]["versionId"] for d in result["deployments"]] == ["v2", "v3"]
    assert all(d["phase"] == "completed" for d in result["deployments"])
    flags = await h.flags.list_version_flags(wf, include_archived=True)
    assert [(f.info.version_id, f.archived) for f in flags] == [("v3", False), ("v2", True), ("v1", True)]
    assert general_percent(flags[0]) == 100


async def test_redeploy_of_an_older_version_becomes_the_newest(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf)
    async with serving(h.client, wf, "v1", "v2"):
        await start_old(h, wf, 3)
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps(QUICK)))
        await finish_ci(h, wf)
        await ci.deploy(h.client, h.task_queue, event(wf, "v1"), fast(steps=parse_steps(QUICK)))
        result = await finish_ci(h, wf)
        for i in range(3):
            assert await queue_of(h.client, f"{wf}-{i}") == f"{wf}-v1"
    [record] = result["deployments"]
    assert record["fromVersion"]["versionId"] == "v2"
    assert record["toVersion"]["flagName"] == f"workflow.{wf}.seqId.002.version.v1"
    live = [f for f in await h.flags.list_version_flags(wf)]
    assert [(f.info.seq_id, f.info.version_id) for f in live] == [(2, "v1")]


async def test_forced_continue_as_new_keeps_state_in_every_workflow(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf)
    async with serving(h.client, wf, "v1", "v2", "v3"):
        runs = await start_old(h, wf, 8)
        options = fast(steps=parse_steps("25@0.5s,50@0.5s,75@0.5s,100@0.5s"), continueAsNewAfter=10, batchSize=3)
        short = CIInput(continue_as_new_after=10)  # the CI run this deploy starts continues as new at 10 events
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), options, ci_input=short)
        await ci.deploy(h.client, h.task_queue, event(wf, "v3"), options)
        result = await finish_ci(h, wf)
        for workflow_id in runs:
            assert await queue_of(h.client, workflow_id) == f"{wf}-v3"
        for workflow_id, run_id in runs.items():
            assert await migrate_signals_received(h.client, workflow_id, run_id) == 1
    assert [d["toVersion"]["versionId"] for d in result["deployments"]] == ["v2", "v3"]
    assert [d["migration"]["signalled"] for d in result["deployments"]] == [8, 8]
    for workflow_id in (ci_workflow_id(wf), f"rollout.{wf}", f"migration.{wf}"):
        assert await continued_as_new(h.client, workflow_id), f"{workflow_id} never continued as new"


async def test_failed_flag_writes_are_retried_and_shown(h: CIHarness, wf: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from diachronic.errors import FlagStoreError

    await deploy_initial(h, wf)
    real = h.flags.set_general_percent
    failures = {"left": 3}

    async def flaky(flag_name: str, percent: int, **kw: Any) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise FlagStoreError("flag store unavailable (injected)")
        await real(flag_name, percent, **kw)

    monkeypatch.setattr(h.flags, "set_general_percent", flaky)
    async with serving(h.client, wf, "v1", "v2"):
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps(QUICK)))
        result = await finish_ci(h, wf)
    [record] = result["deployments"]
    assert record["phase"] == "completed" and failures["left"] == 0
    assert [p for _, p in (await _rollout_history(h, wf))] == [0, 50, 100]  # no step skipped


async def test_bad_input_is_refused_and_changes_nothing(h: CIHarness, wf: str) -> None:
    with pytest.raises(ValueError, match="version id"):
        event(wf, "v.1")
    with pytest.raises(ValueError, match="must not be empty"):
        event(wf, "")
    with pytest.raises(NotFound):
        await ci.control(h.client, wf, "continue")
    with pytest.raises(InvalidInput, match="unknown control"):
        await ci.control(h.client, wf, "explode")
    await deploy_initial(h, wf)
    # A malformed deploy payload through the original's signal is ignored and recorded, never fatal.
    handle = await h.client.start_workflow(CIWorkflow.run, CIInput(), id=ci_workflow_id(wf), task_queue=h.task_queue)
    await handle.signal("diachronic.ci.workflow.deploy.success", {"workflowName": wf})
    await eventually(lambda: _ignored(h, wf), what="ignored count")
    status = await ci.status(h.client, wf)
    assert status.last_error is not None and "versionId" in status.last_error
    with pytest.raises(NotFound):
        await ci.control(h.client, wf, "continue")  # the idle CI run has completed
    assert [f.info.version_id for f in await h.flags.list_version_flags(wf)] == ["v1"]


async def test_failing_step_ends_the_run_with_a_typed_reason(
    h: CIHarness, wf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diachronic.errors import FlagStoreError

    async def broken(workflow_name: str, version_id: str) -> None:
        raise FlagStoreError("the flag store refuses this version", retryable=False)

    monkeypatch.setattr(h.flags, "apply_version_flag", broken)
    async with serving(h.client, wf, "v1"):
        await ci.deploy(h.client, h.task_queue, event(wf, "v1"))
        with pytest.raises(WorkflowFailureError) as failure:
            await finish_ci(h, wf)
    assert "FlagStoreError: the flag store refuses this version" in str(failure.value.cause)
    status = await ci.status(h.client, wf)
    assert status.phase is Phase.FAILED and "FlagStoreError" in (status.last_error or "")


# --------------------------------------------------------------------------------------------------- helpers


async def _phase(h: CIHarness, wf: str, phase: Phase) -> bool:
    return (await ci.status(h.client, wf)).phase is phase


async def _percent(h: CIHarness, wf: str, percent: int) -> bool:
    return (await ci.status(h.client, wf)).rollout_percent == percent


async def _ignored(h: CIHarness, wf: str) -> bool:
    state = await h.client.get_workflow_handle(ci_workflow_id(wf)).query("db")
    return bool(state["ignored"])


async def _cleanup_waiting(h: CIHarness, workflow_id: str) -> bool:
    state = await h.client.get_workflow_handle(workflow_id).query("status")
    return bool(state["iterations"] >= 2 and state["waitingFor"])


async def _rollout_history(h: CIHarness, wf: str) -> list[tuple[str, int]]:
    status = await h.client.get_workflow_handle(f"rollout.{wf}").query("status")
    return [tuple(x) for x in status["history"]]  # type: ignore[misc]


async def continued_as_new(client: Client, workflow_id: str) -> bool:
    """From Temporal's histories: some run of the workflow ended by continuing as new."""
    async for execution in client.list_workflows(f'WorkflowId="{workflow_id}"'):
        history = await client.get_workflow_handle(workflow_id, run_id=execution.run_id).fetch_history()
        if history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes"):
            return True
    return False
