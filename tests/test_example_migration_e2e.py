"""End to end on the dev server: 50 running v1 subscriptions are told to migrate and all end up on v2.

In-process workers serve ``<prefix>subscription-v1`` and ``<prefix>subscription-v2``; each workflow gets
``diachronic.v1.migrate {taskQueue: <prefix>subscription-v2}``; afterwards describe shows the new queue, the
``status`` query answers from v2 code with the reshaped state and the same renewal deadline, and visibility
counts nothing running on the old queue (the CI's "migration done" condition).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, TypeVar

from examples.subscription import WORKFLOW_NAME, task_queue
from examples.subscription.shared import ChangePlan, SubscriptionResult
from examples.subscription.starter import start_subscriptions
from examples.subscription.worker import build_worker
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from tests.conditions import eventually

from diachronic.migrate import locate, signal_migrate, wait_for_task_queue

T = TypeVar("T")
COUNT = 50


async def status(client: Client, workflow_id: str) -> dict[str, Any]:
    result: dict[str, Any] = await client.get_workflow_handle(workflow_id).query("status")
    return result


async def on_v1(client: Client, workflow_id: str) -> dict[str, Any]:
    """The v1 status, once the workflow has run its first task (a query before that may fail)."""
    return await eventually(lambda: status(client, workflow_id), lambda s: s["version"] == "v1", not_yet=(RPCError,))


async def running_on(client: Client, queue: str) -> int:
    query = f'WorkflowType="{WORKFLOW_NAME}" AND TaskQueue="{queue}" AND ExecutionStatus="Running"'
    return (await client.count_workflows(query)).count


async def test_fifty_running_v1_subscriptions_migrate_to_v2(dev_env: WorkflowEnvironment) -> None:
    client = dev_env.client
    prefix = f"e2e-{uuid.uuid4().hex[:8]}-"
    q1, q2 = task_queue("v1", prefix), task_queue("v2", prefix)
    async with build_worker(client, "v1", q1), build_worker(client, "v2", q2):
        ids = await start_subscriptions(client, count=COUNT, queue=q1, id_prefix=prefix)
        before = await asyncio.gather(*(on_v1(client, wid) for wid in ids))
        first_runs = {wid: (await locate(client, wid)).run_id for wid in ids}
        changed = ids[::5]  # signals delivered before the migrate signal travel with the state
        await asyncio.gather(
            *(
                client.get_workflow_handle(w).signal("change_plan", ChangePlan(plan="gold", price_cents=4200))
                for w in changed
            )
        )
        await eventually(lambda: running_on(client, q1), lambda n: n == COUNT, not_yet=(RPCError,))

        await asyncio.gather(*(signal_migrate(client, wid, q2) for wid in ids))

        moved = await asyncio.gather(*(wait_for_task_queue(client, wid, q2, timeout=60) for wid in ids))
        assert all(where.run_id != first_runs[where.workflow_id] for where in moved)
        after = await asyncio.gather(*(status(client, wid) for wid in ids))
        for wid, old, new in zip(ids, before, after, strict=True):
            assert new["version"] == "v2", wid
            expected_plan = (
                {"name": "gold", "price_cents": 4200}
                if wid in changed
                else {"name": old["state"]["plan"], "price_cents": old["state"]["price_cents"]}
            )
            assert new["state"]["plan"] == expected_plan, wid
            assert new["state"]["next_renewal"] == old["state"]["next_renewal"], wid
            assert new["state"]["renewals"] == 0 and new["state"]["history"] == [], wid

        # What the CI waits for: nothing of this type left running on the old queue.
        await eventually(lambda: running_on(client, q1), lambda n: n == 0, not_yet=(RPCError,))
        await eventually(lambda: running_on(client, q2), lambda n: n == COUNT, not_yet=(RPCError,))

        await asyncio.gather(*(client.get_workflow_handle(w).signal("cancel") for w in ids))
        results = await asyncio.gather(
            *(client.get_workflow_handle(w, result_type=SubscriptionResult).result() for w in ids)
        )
        assert {r.version for r in results} == {"v2"}
