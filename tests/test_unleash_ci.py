"""The CI engine end to end on the real Unleash (and the Temporal dev server): a migratory deployment whose rollout a
human fast-forwards through Unleash's own Admin API; the rollout notices at its next poll, steps aside, and the
migration follows the flag until the old version is retired. The signaler routes through ``UnleashClient``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from tests.ci_helpers import event, migrate_signals_received, serving
from tests.conditions import eventually
from tests.unleash_fixtures import HumanAdmin, UnleashServer, ci_on_unleash, throwaway_workflow

from diachronic.ci import client as ci
from diachronic.ci.contracts import DeployOptions, Phase, RolloutOutcome
from diachronic.ci.planner.schedule import parse_steps
from diachronic.contracts import ci_workflow_id
from diachronic.flags import GENERAL_TRAFFIC_TITLE
from diachronic.flags.evaluation import general_percent
from diachronic.flags.unleash import UnleashFlagStore
from diachronic.signaler import route

pytestmark = [pytest.mark.unleash, pytest.mark.devserver]


@pytest.fixture
async def wf(unleash: UnleashServer) -> AsyncIterator[str]:
    async with throwaway_workflow(unleash, "ulwf") as name:
        yield name


@pytest.fixture
async def flags(unleash: UnleashServer) -> AsyncIterator[UnleashFlagStore]:
    store = unleash.store()  # the defaults: routing refreshes every second
    yield store
    await store.close()


async def test_a_human_edit_in_unleash_stops_the_rollout_and_migration_follows(
    dev_env: WorkflowEnvironment, data_dir: Path, unleash: UnleashServer, flags: UnleashFlagStore, wf: str
) -> None:
    client = dev_env.client
    human = HumanAdmin(unleash)
    async with ci_on_unleash(client, flags, data_dir) as ci_queue, serving(client, wf, "v1", "v2"):
        await ci.deploy(client, ci_queue, event(wf, "v1"))
        await asyncio.wait_for(client.get_workflow_handle(ci_workflow_id(wf)).result(), 60)
        await flags.wait_for_routing(wf)
        runs = {}
        for i in range(8):
            version = await route(flags, wf, f"{wf}-{i}")  # the signaler's routing, through UnleashClient
            handle = await client.start_workflow(wf, {"i": i}, id=f"{wf}-{i}", task_queue=version.task_queue)
            runs[handle.id] = handle.result_run_id or ""
        assert {v.version_id for v in [await route(flags, wf, i) for i in runs]} == {"v1"}

        options = DeployOptions(steps=parse_steps("20@0.2s,40@600s,100@600s"))  # default polling
        await ci.deploy(client, ci_queue, event(wf, "v2"), options)
        await eventually(lambda: _percent(client, wf, 20), what="the first rollout step")
        new_flag = (await flags.list_version_flags(wf))[0].info.flag_name

        await human.set_percent(new_flag, GENERAL_TRAFFIC_TITLE, 100)  # through Unleash's Admin API
        edited = time.monotonic()
        await eventually(lambda: _stopped(client, wf), timeout=10, what="the rollout to notice the hand edit")
        noticed = time.monotonic() - edited
        # The target is 2 s (docs/benchmarks.md; 1.2-1.6 s here: one 1 s poll, a read, the status query). Timing
        # targets are benchmarks, not unit tests, so this only proves the rollout polls (its next step is 600 s
        # away) with room for a loaded CI machine.
        assert noticed <= 5.0, f"the rollout noticed the hand edit after {noticed:.2f}s"

        result = await asyncio.wait_for(client.get_workflow_handle(ci_workflow_id(wf)).result(), 60)
    await human.close()
    [record] = result["deployments"]
    assert record["rollout"]["outcome"] == RolloutOutcome.STOPPED
    assert record["rollout"]["reason"] == "RolloutPercentNotExpected"
    assert record["phase"] == "stopped" and record["migration"]["signalled"] == len(runs)
    for workflow_id, run_id in runs.items():
        described = await client.get_workflow_handle(workflow_id).describe()
        assert described.task_queue == f"{wf}-v2"
        assert await migrate_signals_received(client, workflow_id, run_id) == 1
    listed = await flags.list_version_flags(wf, include_archived=True)
    assert [(f.info.version_id, f.archived, general_percent(f)) for f in listed] == [
        ("v2", False, 100),
        ("v1", True, 100),
    ]
    await flags.wait_for_routing(wf)
    assert (await route(flags, wf, "a-new-id")).version_id == "v2"


async def _percent(client: Client, wf: str, percent: int) -> bool:
    return (await ci.status(client, wf)).rollout_percent == percent


async def _stopped(client: Client, wf: str) -> bool:
    status = await ci.status(client, wf)
    if status.phase in (Phase.MIGRATING, Phase.COMPLETED):
        return True
    return status.last_error is not None and "a human changed it" in status.last_error
