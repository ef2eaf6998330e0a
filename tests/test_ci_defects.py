"""The twelve defects of issue 12 §1, each as the sequence that showed it, on the real CI workflows and activities
(the embedded flag store, local worker processes; the time-skipping server, or the dev server where the CI needs
visibility). Each of these tests failed against the code before its fix. docs/safety.md tells each story."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from examples.sleeper import FINISH_SIGNAL
from pydantic import ValidationError
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from tests.ci_helpers import (
    CIHarness,
    TimeSkippingActivities,
    ci_end,
    ci_harness,
    deploy_initial,
    event,
    fast,
    serving,
    start_old,
    start_worker_process,
)
from tests.conditions import eventually

from diachronic.ci import client as ci
from diachronic.ci.contracts import DEPLOY_UPDATE, CIInput, DeployOptions, GateStage, RolloutInput, RolloutRun
from diachronic.ci.planner.schedule import parse_steps
from diachronic.ci.rollout import RolloutWorkflow
from diachronic.ci.workflow import CIWorkflow
from diachronic.contracts import DEPLOY_SUCCESS_SIGNAL, RolloutStep, ci_workflow_id
from diachronic.errors import FlagStoreError, InvalidInput
from diachronic.flags.evaluation import general_percent

QUICK = parse_steps("50@0.3s,100@0.3s")


@pytest.fixture
async def ts(time_env: WorkflowEnvironment, data_dir: Path) -> AsyncIterator[CIHarness]:
    """A CI worker on the time-skipping server (no visibility: no migration or cleanup)."""
    async with ci_harness(
        time_env.client, data_dir, f"ci-{uuid.uuid4()}", activities_class=TimeSkippingActivities
    ) as harness:
        yield harness


async def percents(h: CIHarness, wf: str) -> list[tuple[str, int | None, bool]]:
    return [
        (f.info.version_id, general_percent(f), f.archived)
        for f in await h.flags.list_version_flags(wf, include_archived=True)
    ]


async def status_of(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    return (await client.get_workflow_handle(workflow_id).describe()).status


def refuse_version(h: CIHarness, monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    """The flag store refuses to register ``version`` (a permanent failure of that deployment's first write)."""
    real = h.flags.apply_version_flag

    async def refusing(workflow_name: str, version_id: str) -> Any:
        if version_id == version:
            raise FlagStoreError(f"the flag store refuses {version_id} (injected)", retryable=False)
        return await real(workflow_name, version_id)

    monkeypatch.setattr(h.flags, "apply_version_flag", refusing)


# ----------------------------------------------------------------------------------------------- 1


@pytest.mark.devserver
async def test_1_a_roll_back_keeps_the_workers_of_the_version_it_makes_live_again(h: CIHarness, wf: str) -> None:
    """v2 deployed non-migratory (cleanup of v1 waits for v1's workflows), then v1 redeployed: when v1's old
    workflows end, the old cleanup must not delete the workers that now serve v1's new flag."""
    await start_worker_process(h, wf, "v1")
    await deploy_initial(h, wf, "v1")
    async with serving(h.client, wf, "v2"):
        runs = await start_old(h, wf, 2)
        await ci.deploy(h.client, h.task_queue, event(wf, "v2", isNonMigratory=True), fast(steps=QUICK))
        [first], _ = await ci_end(h, wf)
        await ci.deploy(h.client, h.task_queue, event(wf, "v1"), fast(steps=QUICK))  # roll-back by redeploy
        [back], _ = await ci_end(h, wf)
        assert back["phase"] == "completed" and back["toVersion"]["seqId"] == 2
        for workflow_id in runs:
            await h.client.get_workflow_handle(workflow_id).signal(FINISH_SIGNAL)
        await h.client.get_workflow_handle(first["cleanupWorkflowId"]).result()
    assert [w.running for w in await h.workers.find(wf, "v1")] == [True]
    assert await percents(h, wf) == [("v1", 100, False), ("v2", 100, True), ("v1", 100, True)]


# ----------------------------------------------------------------------------------------------- 2


async def test_2_a_human_edit_between_the_rollouts_read_and_write_wins(
    ts: CIHarness, wf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollout read 0 %, a human set 30 % before the rollout's write of 50 % landed: the write must not land."""
    await ts.flags.apply_version_flag(wf, "v1")
    await ts.flags.set_general_percent(f"workflow.{wf}.seqId.000.version.v1", 100)
    version = await ts.flags.apply_version_flag(wf, "v2")
    real = ts.flags.set_general_percent

    async def human_first(flag_name: str, percent: int, **kw: Any) -> None:
        if percent == 50:
            await real(flag_name, 30)  # the human's edit lands between the rollout's read and its write
        await real(flag_name, percent, **kw)

    monkeypatch.setattr(ts.flags, "set_general_percent", human_first)
    handle = await ts.client.start_workflow(
        RolloutWorkflow.run,
        RolloutRun(input=RolloutInput(workflow_name=wf, to_version=version, steps=parse_steps("50@60s,100@60s"))),
        id=f"r-{uuid.uuid4()}",
        task_queue=ts.task_queue,
    )
    result = await handle.result()
    assert (await percents(ts, wf))[0] == ("v2", 30, False)
    assert result.reason == "RolloutPercentNotExpected"


# ----------------------------------------------------------------------------------------------- 3


async def test_3_a_failed_deployment_fails_its_run_across_continue_as_new(
    ts: CIHarness, wf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued = asyncio.Event()
    real = ts.flags.apply_version_flag

    async def refuse_v1_once_v2_waits(workflow_name: str, version_id: str) -> Any:
        if version_id == "v1":
            await queued.wait()  # v2 waits in the queue: the run continues as new between the two
            raise FlagStoreError("the flag store refuses v1 (injected)", retryable=False)
        return await real(workflow_name, version_id)

    monkeypatch.setattr(ts.flags, "apply_version_flag", refuse_v1_once_v2_waits)
    short = CIInput(continue_as_new_after=10)
    await ci.deploy(ts.client, ts.task_queue, event(wf, "v1"), ci_input=short)
    await ci.deploy(ts.client, ts.task_queue, event(wf, "v2"))
    queued.set()
    handle = ts.client.get_workflow_handle(ci_workflow_id(wf))
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "DeploymentFailed" and "v1" in cause.message
    last = await handle.describe()
    first_run = last.raw_description.workflow_execution_info.first_run_id
    assert first_run and first_run != last.run_id  # the failure was carried into a later run
    first = await ts.client.get_workflow_handle(handle.id, run_id=first_run).fetch_history()
    assert first.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")


# ----------------------------------------------------------------------------------------------- 4


def test_4_a_schedule_is_validated_where_it_arrives() -> None:
    with pytest.raises(ValidationError, match="must not go down"):
        DeployOptions(steps=[RolloutStep(percent=50, wait_s=60), RolloutStep(percent=20, wait_s=60)])
    with pytest.raises(InvalidInput, match="must not go down"):
        parse_steps("50@1s,20@1s")
    short = DeployOptions(steps=[RolloutStep(percent=10, wait_s=5), RolloutStep(percent=50, wait_s=5)])
    assert short.steps is not None and [s.percent for s in short.steps] == [10, 50, 100]


async def test_4_the_deploy_update_refuses_a_falling_schedule_and_queues_nothing(ts: CIHarness, wf: str) -> None:
    handle = await ts.client.start_workflow(CIWorkflow.run, CIInput(), id=ci_workflow_id(wf), task_queue=ts.task_queue)
    request = {
        "event": event(wf, "v1").model_dump(mode="json", by_alias=True),
        "options": {"steps": [{"percent": 50, "waitS": 60}, {"percent": 20, "waitS": 60}]},
    }
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(DEPLOY_UPDATE, request)
    await handle.result()
    assert await ts.flags.list_version_flags(wf, include_archived=True) == []


# ----------------------------------------------------------------------------------------------- 5


@pytest.mark.devserver
async def test_5_a_migration_that_cannot_start_does_not_leave_its_rollout_running(h: CIHarness, wf: str) -> None:
    """A migration of an earlier deployment still runs: v2's migration cannot start. v2 fails, and its rollout must
    not go on raising v2's percentage (nor make the next deployment fail with ChildStillRunning)."""
    await deploy_initial(h, wf, "v1")
    async with serving(h.client, wf, "leftover", "v2", "v3"):
        leftover = await h.client.start_workflow("Sleeper", id=f"migration.{wf}", task_queue=f"{wf}-leftover")
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps("50@1h,100@1h")))
        await ci.deploy(h.client, h.task_queue, event(wf, "v3", isDarkDeploy=True), fast(steps=QUICK))
        await eventually(lambda: _phase_is(h, wf, "awaiting_continue"), what="v3 awaits continue after v2 failed")
        assert await status_of(h.client, f"rollout.{wf}") is not WorkflowExecutionStatus.RUNNING
        await leftover.terminate("test over")
        await ci.control(h.client, wf, "cancel")
        deployments, _ = await ci_end(h, wf)
    assert [d["phase"] for d in deployments] == ["failed", "cancelled"]


@pytest.mark.devserver
async def test_5_a_migration_that_fails_early_ends_the_deployment_at_once(
    h: CIHarness, wf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The migration fails at its first batch while the rollout has hour-long steps: the CI must not wait an hour."""
    await deploy_initial(h, wf, "v1")
    real_list = h.flags.list_version_flags
    rollout_reads: list[bool] = []

    async def broken_for_the_migration(workflow_name: str, *, include_archived: bool = False) -> Any:
        rollout_reads.extend([True] if include_archived else [])  # the rollout reads every flag, archived too
        if rollout_reads and not include_archived:  # once the rollout runs, the migration's batch reads live flags
            raise FlagStoreError("the flag store refuses the migration (injected)", retryable=False)
        return await real_list(workflow_name, include_archived=include_archived)

    monkeypatch.setattr(h.flags, "list_version_flags", broken_for_the_migration)
    async with serving(h.client, wf, "v1", "v2"):
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps("50@1h,100@1h")))
        await eventually(lambda: _phase_is(h, wf, "failed"), what="the deployment failed with its migration")
    assert await status_of(h.client, f"rollout.{wf}") is not WorkflowExecutionStatus.RUNNING


# ----------------------------------------------------------------------------------------------- 6


def test_6_names_that_cannot_be_label_values_are_refused_at_deploy() -> None:
    with pytest.raises(ValidationError, match="at most 63"):
        event("wf", "v" * 64)
    with pytest.raises(ValidationError, match="end with a letter or digit"):
        event("wf", "v1-")


async def test_6_two_workflows_cannot_share_a_task_queue(ts: CIHarness, wf: str) -> None:
    """``<wf>`` + ``a-b`` and ``<wf>-a`` + ``b`` both make the task queue ``<wf>-a-b``."""
    await deploy_initial(ts, wf, "a-b")
    await ci.deploy(ts.client, ts.task_queue, event(f"{wf}-a", "b"))
    deployments, error = await ci_end(ts, f"{wf}-a")
    assert deployments[0]["phase"] == "failed" and error is not None and "TaskQueueTaken" in error
    assert await ts.flags.list_version_flags(f"{wf}-a", include_archived=True) == []


# ----------------------------------------------------------------------------------------------- 7


async def test_7_a_ci_deploys_only_its_own_workflow(ts: CIHarness, wf: str) -> None:
    other = f"{wf}x"
    payload = event(other, "v1").model_dump(mode="json", by_alias=True)
    handle = await ts.client.start_workflow(
        CIWorkflow.run,
        CIInput(),
        id=ci_workflow_id(wf),
        task_queue=ts.task_queue,
        start_signal=DEPLOY_SUCCESS_SIGNAL,
        start_signal_args=[payload],
    )
    await handle.result()
    assert await ts.flags.list_version_flags(other, include_archived=True) == []
    state = await handle.query("db")
    assert state["ignored"] == 1


# ----------------------------------------------------------------------------------------------- 8


async def test_8_a_two_day_flag_store_outage_ends_the_deployment_with_a_typed_reason(
    ts: CIHarness, time_env: WorkflowEnvironment, wf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every write fails for two (virtual) days: the deployment ends failed with a typed reason long before, with a
    short history, instead of retrying until Temporal's history limit terminates the run. (Temporal's retries of an
    activity follow virtual time only while the test sleeps: the test lets it pass an hour at a time.)"""
    await deploy_initial(ts, wf, "v1")
    real = ts.flags.set_general_percent
    outage: list[Any] = []

    async def down_for_two_days(flag_name: str, percent: int, **kw: Any) -> None:
        now = activity.info().current_attempt_scheduled_time
        outage[:] = outage or [now]
        if now < outage[0] + timedelta(days=2):
            raise FlagStoreError("flag store unavailable (injected)")
        await real(flag_name, percent, **kw)

    monkeypatch.setattr(ts.flags, "set_general_percent", down_for_two_days)
    slow_poll = fast(steps=QUICK, pollIntervalS=60)  # the health analysis looks a minute apart: hours pass here
    await ci.deploy(ts.client, ts.task_queue, event(wf, "v2", isNonMigratory=True), slow_poll)
    ci_run = ts.client.get_workflow_handle(ci_workflow_id(wf))
    for _ in range(48):  # two days, an hour at a time
        if (await ci_run.describe()).status is not WorkflowExecutionStatus.RUNNING:
            break
        await time_env.sleep(3600)
    deployments, error = await ci_end(ts, wf)
    assert deployments[0]["phase"] == "failed" and error is not None and "DeploymentFailed" in error
    assert "StepTimedOut" in error and "FlagStoreError" in error
    rollout = await ts.client.get_workflow_handle(f"rollout.{wf}").fetch_history()
    assert len(rollout.events) < 100
    started, ended = rollout.events[0].event_time.ToDatetime(), rollout.events[-1].event_time.ToDatetime()
    assert ended - started < timedelta(days=2)


# ----------------------------------------------------------------------------------------------- 9


@pytest.mark.devserver
async def test_9_workers_kept_for_a_queued_roll_back_go_when_it_never_happens(
    h: CIHarness, wf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await start_worker_process(h, wf, "v1")
    await deploy_initial(h, wf, "v1")
    refuse_version(h, monkeypatch, "v1")  # the roll-back to v1 queued behind v2 will fail
    await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=QUICK))
    await eventually(lambda: _waiting_for_workers(h, wf), what="v2 waits for its workers")
    await ci.deploy(h.client, h.task_queue, event(wf, "v1"), fast(steps=QUICK))  # queued: v2 still prepares
    async with serving(h.client, wf, "v2"):
        deployments, _ = await ci_end(h, wf)
        assert [d["phase"] for d in deployments] == ["completed", "failed"]
        await eventually(lambda: _no_workers(h, wf, "v1"), what="v1's workers deleted once its roll-back failed")
    assert await percents(h, wf) == [("v2", 100, False), ("v1", 100, True)]


async def _waiting_for_workers(h: CIHarness, wf: str) -> bool:
    status = await ci.status(h.client, wf)
    return status.gates is not None and status.gates.stage is GateStage.WAITING_FOR_WORKERS


# ----------------------------------------------------------------------------------------------- 10


async def test_10_a_cancel_during_an_initial_deployment_is_honoured_and_its_reason_recorded(
    ts: CIHarness, wf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    real = ts.flags.set_general_percent

    async def slow(flag_name: str, percent: int, **kw: Any) -> None:
        entered.set()
        await release.wait()
        await real(flag_name, percent, **kw)

    monkeypatch.setattr(ts.flags, "set_general_percent", slow)
    await ci.deploy(ts.client, ts.task_queue, event(wf, "v1"))
    await entered.wait()
    await ci.control(ts.client, wf, "cancel", reason="wrong build")
    release.set()
    [record], _ = await ci_end(ts, wf)
    assert record["phase"] == "cancelled"
    assert [(c["control"], c["reason"]) for c in record["controls"]] == [("cancel", "wrong build")]
    assert record["end"]["by"] == "human" and record["end"]["note"] == "wrong build"
    assert "write of 100 % had been made" in record["end"]["detail"]


# ----------------------------------------------------------------------------------------------- 11


@pytest.mark.devserver
async def test_11_redelivered_and_stale_events_never_rerun_a_deployment(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf, "v1")
    async with serving(h.client, wf, "v1", "v2", "v3"):
        v2 = event(wf, "v2")
        await ci.deploy(h.client, h.task_queue, v2, fast(steps=QUICK))
        await ci.deploy(h.client, h.task_queue, event(wf, "v3", isDarkDeploy=True), fast(steps=QUICK))
        await eventually(lambda: _phase_is(h, wf, "awaiting_continue"), what="v3 awaits continue")
        again = await ci.deploy(h.client, h.task_queue, v2, fast(steps=QUICK))  # v2's event, re-sent
        assert again.position is None and again.decision.startswith("stale")
        await ci.control(h.client, wf, "continue")
        deployments, _ = await ci_end(h, wf)
        assert [(d["toVersion"]["versionId"], d["phase"]) for d in deployments] == [
            ("v2", "completed"),
            ("v3", "completed"),
        ]
        v3_flag = f"workflow.{wf}.seqId.002.version.v3"
        await h.flags.set_general_percent(v3_flag, 40)  # a human holds v3 at 40 %
        v3 = event(wf, "v3")
        await ci.deploy(h.client, h.task_queue, v3, fast(steps=QUICK))  # redelivered after the run ended
        [duplicate], _ = await ci_end(h, wf)
    assert duplicate["phase"] == "duplicate"
    assert (await percents(h, wf))[0] == ("v3", 40, False)


# ----------------------------------------------------------------------------------------------- 12


async def test_12_a_deploy_for_another_environment_is_refused_and_changes_nothing(ts: CIHarness, wf: str) -> None:
    await ci.deploy(ts.client, ts.task_queue, event(wf, "v1", environment="production"))
    deployments, error = await ci_end(ts, wf)
    assert deployments[0]["phase"] == "failed"
    assert error is not None and "EnvironmentMismatch" in error and "'production'" in error
    assert await ts.flags.list_version_flags(wf, include_archived=True) == []


# ----------------------------------------------------------------------------------------------- helpers


async def _phase_is(h: CIHarness, wf: str, phase: str) -> bool:
    return (await ci.status(h.client, wf)).phase.value == phase


async def _no_workers(h: CIHarness, wf: str, version: str) -> bool:
    return await h.workers.find(wf, version) == []
