"""The canary cohort end to end on the real dev server (``deploy --migrate-canary``, docs/gates.md): the migration
moves the cohort only, soaks, then moves the rest; a cohort that fails on the new version aborts the deployment with
the rest still on the old queue. Who moved and when is read from Temporal's own histories and visibility."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.worker import Worker
from tests.ci_helpers import CIHarness, ci_end, deploy_initial, event, fast, serving, start_old
from tests.conditions import eventually
from tests.gate_workflows import Doomed

from diachronic.ci import client as ci
from diachronic.ci.contracts import CanaryOptions, CanaryPhase, Control, HealthRule, Phase
from diachronic.ci.planner.health import HEALTH_CHECK_FAILED
from diachronic.ci.planner.schedule import parse_steps
from diachronic.cli.status import describe
from diachronic.contracts import MIGRATE_SIGNAL
from diachronic.errors import InvalidInput
from diachronic.temporal import count_narrowed, visibility_string
from diachronic.versions import task_queue

pytestmark = pytest.mark.devserver
QUICK = "50@0.3s,100@0.3s"


async def migrate_signalled_at(h: CIHarness, workflow_id: str, run_id: str) -> datetime | None:
    """When the old run received its migrate signal, by Temporal's clock (None: never)."""
    history = await h.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return next(
        (
            e.event_time.ToDatetime()
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            and e.workflow_execution_signaled_event_attributes.signal_name == MIGRATE_SIGNAL
        ),
        None,
    )


async def running_on(h: CIHarness, wf: str, version: str) -> int:
    query = f"TaskQueue={visibility_string(task_queue(wf, version))} AND ExecutionStatus='Running'"
    return (await h.client.count_workflows(query)).count


async def test_a_failing_cohort_aborts_the_deployment_and_only_the_cohort_moved(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf, "v1")
    async with (
        serving(h.client, wf, "v1"),
        Worker(h.client, task_queue=task_queue(wf, "v2"), workflows=[Doomed]),  # v2 fails what it runs
    ):
        runs = await start_old(h, wf, 6)
        canary = CanaryOptions(size=2, soak_s=3600)  # only the health gate ends this soak
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps(QUICK), canary=canary))
        deployments, _ = await ci_end(h, wf)
        [record] = deployments
        assert record["phase"] == Phase.ABORTED.value and record["end"]["reason"] == HEALTH_CHECK_FAILED
        assert record["gates"]["breach"]["rule"] == HealthRule.MIGRATED_FAILED.value
        signalled = {wid for wid, rid in runs.items() if await migrate_signalled_at(h, wid, rid) is not None}
        # The cohort at most, and no one else: the abort may come before its second member moved (under load).
        assert 1 <= len(signalled) <= 2, signalled
        # The rest never moved and is not lost: still running on v1, their first runs untouched.
        assert await running_on(h, wf, "v1") == 6 - len(signalled)
        for workflow_id in set(runs) - signalled:
            described = await h.client.get_workflow_handle(workflow_id).describe()
            assert described.status is WorkflowExecutionStatus.RUNNING and described.run_id == runs[workflow_id]
            assert described.task_queue == task_queue(wf, "v1")
        for workflow_id in signalled:  # the cohort failed on v2, after it moved there
            described = await h.client.get_workflow_handle(workflow_id).describe()
            assert described.status is WorkflowExecutionStatus.FAILED and described.task_queue == task_queue(wf, "v2")


async def test_a_healthy_cohort_soaks_then_the_rest_moves_and_the_deployment_completes(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf, "v1")
    soak = timedelta(seconds=2)
    async with serving(h.client, wf, "v1", "v2"):
        runs = await start_old(h, wf, 6)
        canary = CanaryOptions(size=2, soak_s=soak.total_seconds())
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps(QUICK), canary=canary))
        deployments, failure = await ci_end(h, wf)
        assert failure is None and deployments[-1]["phase"] == Phase.COMPLETED.value
        assert await running_on(h, wf, "v1") == 0 and await running_on(h, wf, "v2") == 6
    times = sorted([t for wid, rid in runs.items() if (t := await migrate_signalled_at(h, wid, rid)) is not None])
    assert len(times) == 6
    cohort, rest = times[:2], times[2:]
    # By Temporal's clock: the rest was signalled a whole soak after the last member of the cohort.
    assert rest[0] - cohort[-1] >= soak


async def test_a_percentage_cohort_with_a_query_moves_only_what_the_query_matches_first(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf, "v1")
    async with serving(h.client, wf, "v1", "v2"):
        runs = await start_old(h, wf, 6)
        chosen = sorted(runs)[:3]
        query = "WorkflowId IN (" + ", ".join(visibility_string(w) for w in chosen) + ")"
        canary = CanaryOptions(percent=50, query=query, soak_s=3600)  # 50 % of the 3 the query matches: 2
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps("100@0s"), canary=canary))
        soaking = await eventually(
            lambda: ci.status(h.client, wf),
            lambda s: (
                s.migration is not None
                and s.migration.canary is not None
                and s.migration.canary.phase is CanaryPhase.SOAK
            ),
            what="the cohort soaks",
        )
        assert soaking.migration is not None and soaking.migration.canary is not None
        assert (soaking.migration.canary.target, soaking.migration.canary.signalled) == (2, 2)
        assert soaking.migration.canary.summary.startswith("canary soak until ")
        assert f"| {soaking.migration.canary.summary}" in describe(soaking)  # what `diachronic status` prints
        signalled = {wid for wid, rid in runs.items() if await migrate_signalled_at(h, wid, rid) is not None}
        assert len(signalled) == 2 and signalled <= set(chosen)
        await ci.control(h.client, wf, Control.ABORT.value, reason="enough")
        await ci_end(h, wf)


async def test_a_query_the_server_refuses_is_an_invalid_input_naming_it(h: CIHarness, wf: str) -> None:
    with pytest.raises(InvalidInput, match=r"--canary-query 'NoSuchAttribute = 3'"):
        await count_narrowed(h.client, f"WorkflowType={visibility_string(wf)}", "NoSuchAttribute = 3", "--canary-query")
