"""Sweeps of the old queue on the real dev server (visibility): a retried attempt goes on from its cursor, and a
migration does not read the queue again while nothing changed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest, ListWorkflowExecutionsResponse
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from tests.ci_helpers import CIHarness, event, fast, migrate_signals_received, serving
from tests.conditions import eventually

from diachronic.ci import client as ci
from diachronic.ci.activities import CIActivities
from diachronic.ci.contracts import CIStatus, Phase, SweepInput
from diachronic.ci.planner.schedule import parse_steps
from diachronic.ci.planner.sweep import SweepProgress
from diachronic.contracts import ci_workflow_id
from diachronic.flags import VersionFlag
from diachronic.flags.evaluation import default_strategies
from diachronic.flags.local import LocalFlagStore
from diachronic.versions import version_info
from diachronic.workers.local import LocalWorkers

pytestmark = pytest.mark.devserver
RUNS = 60
PAGE = 10


def flags_at_100(wf: str) -> list[VersionFlag]:
    """As a workflow could have read them: v2 the newest version, taking all general traffic."""
    flags = []
    for seq, version in ((1, "v2"), (0, "v1")):
        info = version_info(wf, seq, version)
        strategies = default_strategies(info.flag_name, general_percent=100)
        flags.append(VersionFlag(info=info, enabled=True, strategies=strategies))
    return flags


class RowCounter:
    """Counts the visibility rows the activity reads, at the one call it reads them with."""

    def __init__(self, client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows = 0
        original = client.workflow_service.list_workflow_executions

        async def counted(request: ListWorkflowExecutionsRequest, **kw: Any) -> ListWorkflowExecutionsResponse:
            response = await original(request, **kw)
            self.rows += len(response.executions)
            return response

        monkeypatch.setattr(client.workflow_service, "list_workflow_executions", counted)


class Crash(Exception):
    """The worker dies right after this heartbeat."""


async def test_a_retried_sweep_goes_on_from_its_last_heartbeat_and_no_run_gets_two_signals(
    dev_env: WorkflowEnvironment, data_dir: Path, wf: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = dev_env.client
    runs = {}
    for i in range(RUNS):  # no worker polls wf-v1: they stay running
        handle = await client.start_workflow(wf, {"i": i}, id=f"{wf}-{i}", task_queue=f"{wf}-v1")
        runs[handle.id] = handle.result_run_id or ""

    async def all_visible() -> bool:
        return (await client.count_workflows(f'TaskQueue="{wf}-v1" AND ExecutionStatus="Running"')).count == RUNS

    await eventually(all_visible, what="the runs in visibility")
    flag_store, workers = LocalFlagStore(data_dir / "flags.sqlite3"), LocalWorkers(data_dir / "workers")
    for version in ("v1", "v2"):  # v2 is the newest version and takes all general traffic: every v1 run is eligible
        applied = await flag_store.apply_version_flag(wf, version)
        await flag_store.set_general_percent(applied.flag_name, 100)
    flags = await flag_store.list_version_flags(wf)
    activities = CIActivities(flag_store, workers, client, environment="development")
    request = SweepInput(
        workflow_name=wf, from_task_queue=f"{wf}-v1", to_version=flags[0].info, flags=flags, batch_size=PAGE, pages=100
    )
    counter = RowCounter(client, monkeypatch)

    # The first attempt signals four pages and dies; Temporal kept the heartbeat of page 3 (it throttles them).
    beats: list[SweepProgress] = []

    def heartbeat(progress: SweepProgress) -> None:
        beats.append(progress)
        if progress.pages == 4 and beats.count(progress) == 1:  # the heartbeat right after page 4
            raise Crash

    first = ActivityEnvironment()
    first.on_heartbeat = heartbeat
    with pytest.raises(Exception, match="Crash"):
        await first.run(activities.migrate_sweep, request)
    kept = next(b for b in beats if b.pages == 3)
    assert kept.cursor is not None and kept.signalled == 3 * PAGE

    # The retry starts from that heartbeat: it reads page 4 again (its signals were sent: Temporal drops them) and
    # the pages after it, never the three before.
    counter.rows = 0
    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(
        retry.info, attempt=2, heartbeat_details=[kept.model_dump(mode="json", by_alias=True)]
    )
    done = await retry.run(activities.migrate_sweep, request)
    assert counter.rows == RUNS - 3 * PAGE, "the retry read visibility rows it had already read"
    assert done.done and done.resumed_at_page == 3 and done.cursor is None
    # Its counts carry on from the heartbeat: the lost page 4 is counted once, as the retry read and signalled it.
    assert (done.rows, done.eligible, done.signalled, done.failed) == (RUNS, RUNS, RUNS, 0)
    for workflow_id, run_id in runs.items():
        assert await migrate_signals_received(client, workflow_id, run_id) == 1
    for workflow_id in runs:
        await client.get_workflow_handle(workflow_id).terminate("test over")
    await flag_store.close()


async def test_a_sweep_signals_nothing_under_flags_the_store_no_longer_holds(
    dev_env: WorkflowEnvironment, data_dir: Path, wf: str
) -> None:
    client = dev_env.client
    handle = await client.start_workflow(wf, {"i": 0}, id=f"{wf}-0", task_queue=f"{wf}-v1")
    flag_store = LocalFlagStore(data_dir / "flags.sqlite3")
    await flag_store.apply_version_flag(wf, "v1")
    activities = CIActivities(flag_store, LocalWorkers(data_dir / "workers"), client, environment="development")
    read = flags_at_100(wf)  # v2 at 100 %, as the workflow read them; the store holds v1 alone (a human's edit)
    request = SweepInput(workflow_name=wf, from_task_queue=f"{wf}-v1", to_version=read[0].info, flags=read)
    progress = await ActivityEnvironment().run(activities.migrate_sweep, request)
    assert progress.stale and progress.pages == 0 and progress.cursor is None
    assert await migrate_signals_received(client, handle.id, handle.result_run_id or "") == 0
    await handle.terminate("test over")
    await flag_store.close()


async def test_with_the_routing_unchanged_sweeps_read_only_new_runs_and_status_says_when_the_next_comes(
    h: CIHarness, wf: str
) -> None:
    async with serving(h.client, wf, "v1", "v2"):  # before the deploys: a deployment waits for its workers
        await ci.deploy(h.client, h.task_queue, event(wf, "v1"))
        await h.client.get_workflow_handle(ci_workflow_id(wf)).result()
        runs = {}
        for i in range(20):
            handle = await h.client.start_workflow(wf, {"i": i}, id=f"{wf}-{i}", task_queue=f"{wf}-v1")
            runs[handle.id] = handle.result_run_id or ""
        await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps("30@0s,100@1h")))

        async def migration_after(sweeps: int) -> CIStatus | None:
            status = await ci.status(h.client, wf)
            m = status.migration
            waiting = m is not None and m.sweeps >= sweeps and m.next_sweep_at is not None
            return status if waiting else None

        # Quiet sweeps come ever later (0.2 s, 0.4 s, ... after the one before): by the sixth, the last runs started
        # seconds before the previous sweep began, so the margin no longer holds them either.
        settled = await eventually(lambda: migration_after(6), what="six sweeps")
        assert settled.migration is not None
        later = await eventually(lambda: migration_after(settled.migration.sweeps + 2), what="two more sweeps")  # type: ignore[union-attr]
        assert later.migration is not None
        assert later.migration.rows_read == settled.migration.rows_read, "sweeps read runs they had read before"
        # The margin's runs are read again (how often depends on the machine's speed), not every run by every sweep.
        assert settled.migration.rows_read < settled.migration.sweeps * 20
        assert later.migration.pacing is not None and "routing unchanged" in later.migration.pacing
        signalled_at_30 = later.migration.signalled
        assert 0 < signalled_at_30 < 20

        await ci.control(h.client, wf, "promote")  # 100 %: a full sweep signals the rest, and only the rest
        result = await h.client.get_workflow_handle(ci_workflow_id(wf)).result()
        [record] = result["deployments"]
        assert record["phase"] == Phase.COMPLETED.value and record["migration"]["signalled"] == 20
        for workflow_id, run_id in runs.items():
            assert await migrate_signals_received(h.client, workflow_id, run_id) == 1
