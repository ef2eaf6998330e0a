"""The gates' reads of Temporal on the real dev server: pollers, health counts, stuck and moved-then-failed
workflows, and what old and new code say about their state (the migrate SDK's snapshot)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
from examples.sleeper import FINISH_SIGNAL, Sleeper
from examples.subscription import WORKFLOW_NAME
from examples.subscription.shared import SubscriptionStart
from examples.subscription.worker import build_worker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from tests.conditions import eventually
from tests.gate_workflows import Crasher, Doomed

from diachronic.ci.contracts import MigrateBackEvidence, VersionHealth
from diachronic.ci.evidence import migrate_back_evidence, version_health
from diachronic.migrate import signal_migrate, wait_for_task_queue
from diachronic.temporal import live_pollers

pytestmark = pytest.mark.devserver
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@contextlib.asynccontextmanager
async def serving(client: Client, queue: str, workflow: type) -> AsyncIterator[None]:
    async with Worker(client, task_queue=queue, workflows=[workflow]):
        yield


async def settles(read: Callable[[], Awaitable[VersionHealth]], expected: VersionHealth) -> VersionHealth:
    """Visibility is eventually consistent: read until the numbers are the expected ones (examples in any order)."""

    def key(health: VersionHealth) -> VersionHealth:
        return health.model_copy(update={"examples": sorted(health.examples)})

    async def check() -> VersionHealth | None:
        health = await read()
        return health if key(health) == key(expected) else None

    return await eventually(check, what=f"health {expected}")


async def test_live_pollers_counts_the_workers_of_a_queue(dev_env: WorkflowEnvironment, wf: str) -> None:
    client, queue = dev_env.client, f"{wf}-v1"
    assert await live_pollers(client, queue) == 0
    async with serving(client, queue, Sleeper):
        assert await eventually(lambda: live_pollers(client, queue), what="a poller") == 1


async def test_health_counts_runs_closed_in_the_window_by_status(dev_env: WorkflowEnvironment, wf: str) -> None:
    client, good, bad = dev_env.client, f"{wf}-v1", f"{wf}-v2"

    async def health(queue: str, since: datetime) -> VersionHealth:
        return await version_health(client, workflow_name=wf, task_queue=queue, since=since, moved_from=good)

    async with serving(client, good, Sleeper), serving(client, bad, Doomed):
        before = await client.start_workflow(wf, id=f"{wf}-before", task_queue=good)
        await before.signal(FINISH_SIGNAL)
        await settles(lambda: health(good, EPOCH), VersionHealth(task_queue=good, closed=1, task_problems=0))
        since = datetime.now(UTC)
        for i in range(3):
            await (await client.start_workflow(wf, id=f"{wf}-ok-{i}", task_queue=good)).signal(FINISH_SIGNAL)
        terminated = await client.start_workflow(wf, id=f"{wf}-terminated", task_queue=good)
        await terminated.terminate("a human stopped it")
        running = await client.start_workflow(wf, id=f"{wf}-running", task_queue=good)
        doomed = [(await client.start_workflow(wf, id=f"{wf}-doomed-{i}", task_queue=bad)).id for i in range(2)]
        await client.start_workflow("another-type", id=f"{wf}-other", task_queue=bad)  # not this workflow's runs

        await settles(
            lambda: health(good, since),
            VersionHealth(task_queue=good, closed=4, terminated=1, task_problems=0, examples=[terminated.id]),
        )
        await settles(
            lambda: health(bad, since),
            VersionHealth(task_queue=bad, closed=2, failed=2, task_problems=0, examples=doomed),
        )
        await running.signal(FINISH_SIGNAL)


async def test_stuck_workflows_are_counted_and_named(dev_env: WorkflowEnvironment, wf: str) -> None:
    client, queue = dev_env.client, f"{wf}-v3"
    async with serving(client, queue, Crasher):
        stuck = await client.start_workflow(wf, id=f"{wf}-stuck", task_queue=queue)
        await settles(
            lambda: version_health(client, workflow_name=wf, task_queue=queue, since=EPOCH),
            VersionHealth(task_queue=queue, task_problems=1, examples=[stuck.id]),
        )
        await stuck.terminate("test over")


async def test_workflows_that_failed_after_moving_are_told_apart(dev_env: WorkflowEnvironment, wf: str) -> None:
    """Two workflows move from v1 to a v2 that fails them; one started on v2 fails too, but never moved."""
    client, old, new = dev_env.client, f"{wf}-v1", f"{wf}-v2"
    since = datetime.now(UTC)
    async with serving(client, old, Sleeper), serving(client, new, Doomed):
        moved = [await client.start_workflow(wf, id=f"{wf}-moved-{i}", task_queue=old) for i in range(2)]
        for handle in moved:
            await signal_migrate(client, handle.id, new)
        started_there = await client.start_workflow(wf, id=f"{wf}-fresh", task_queue=new)
        await settles(
            lambda: version_health(client, workflow_name=wf, task_queue=new, since=since, moved_from=old),
            VersionHealth(
                task_queue=new,
                closed=3,
                failed=3,
                task_problems=0,
                migrated_failed=2,
                examples=[*(h.id for h in moved), started_there.id],
            ),
        )


def subscription(n: int) -> SubscriptionStart:
    return SubscriptionStart(customer_id=f"c{n}", plan="basic", price_cents=900, renew_every_s=3600)


async def test_migrate_back_evidence_asks_the_old_and_the_new_code(dev_env: WorkflowEnvironment) -> None:
    """v1 restores only its own state; v2 and v3 share theirs. Asked of running runs, and of a closed one."""
    client, prefix = dev_env.client, uuid.uuid4().hex[:6]
    q1, q2, q3 = (f"{prefix}-{WORKFLOW_NAME}-{v}" for v in ("v1", "v2", "v3"))

    async def evidence(old: str, new: str) -> MigrateBackEvidence:
        return await migrate_back_evidence(client, workflow_name=WORKFLOW_NAME, old_task_queue=old, new_task_queue=new)

    async with build_worker(client, "v1", q1), build_worker(client, "v2", q2):
        ids = [
            (await client.start_workflow(WORKFLOW_NAME, subscription(n), id=f"{prefix}-{n}", task_queue=q1)).id
            for n in range(3)
        ]
        assert await evidence(q1, q2) == MigrateBackEvidence(running_on_new_queue=0)
        await signal_migrate(client, ids[0], q2)
        await wait_for_task_queue(client, ids[0], q2)
        running = await eventually(lambda: evidence(q1, q2), what="one running on v2")
        assert running == MigrateBackEvidence(
            old_accepts=["subscription/1"], new_state_versions=["subscription/2"], running_on_new_queue=1
        )
        for workflow_id in ids[1:]:
            await signal_migrate(client, workflow_id, q2)
            await wait_for_task_queue(client, workflow_id, q2)
        # Nothing runs on v1 any more: its code is asked through a closed run, which its worker replays.
        closed = await eventually(
            lambda: _if(evidence(q1, q2), lambda e: e.running_on_new_queue == 3), what="all on v2"
        )
        assert closed == MigrateBackEvidence(
            old_accepts=["subscription/1"], new_state_versions=["subscription/2"], running_on_new_queue=3
        )
    async with build_worker(client, "v2", q2), build_worker(client, "v3", q3):
        await signal_migrate(client, ids[0], q3)
        moved = await eventually(lambda: _if(evidence(q2, q3), lambda e: e.running_on_new_queue == 1), what="one on v3")
        # v3 is stuck on its failing workflow tasks: it cannot answer, so no state version is known for it.
        assert moved == MigrateBackEvidence(old_accepts=["subscription/2"], running_on_new_queue=1)
    for workflow_id in ids:
        await client.get_workflow_handle(workflow_id).terminate("test over")


async def _if(
    reading: Awaitable[MigrateBackEvidence], check: Callable[[MigrateBackEvidence], bool]
) -> MigrateBackEvidence | None:
    value = await reading
    return value if check(value) else None
