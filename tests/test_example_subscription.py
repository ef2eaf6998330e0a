"""The subscription sample: its pure pieces, and a year of renewals across a v1 → v2 move (time-skipping)."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from examples.subscription import WORKFLOW_NAME, task_queue
from examples.subscription.shared import ChangePlan, SubscriptionResult, SubscriptionStart, add_months, renewal_due
from examples.subscription.state_v2 import discount_for, from_v1
from examples.subscription.worker import WORKFLOWS, build_worker
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer
from tests.conditions import eventually

from diachronic.migrate import Continuation, locate, signal_migrate, snapshot, wait_for_task_queue

T = TypeVar("T")


async def status(client: Client, workflow_id: str) -> dict[str, Any]:
    result: dict[str, Any] = await client.get_workflow_handle(workflow_id).query("status")
    return result


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        pytest.param("2026-01-15T10:00:00", 1, "2026-02-15T10:00:00", id="plain month"),
        pytest.param("2026-01-31T10:00:00", 1, "2026-02-28T10:00:00", id="clamped to February"),
        pytest.param("2028-01-31T10:00:00", 1, "2028-02-29T10:00:00", id="leap year"),
        pytest.param("2026-01-31T10:00:00", 2, "2026-03-31T10:00:00", id="no drift after a short month"),
        pytest.param("2026-11-30T10:00:00", 3, "2027-02-28T10:00:00", id="across the year"),
    ],
)
def test_add_months(start: str, months: int, expected: str) -> None:
    assert add_months(datetime.fromisoformat(start), months) == datetime.fromisoformat(expected)


def test_loyalty_discount_every_twelfth_renewal() -> None:
    assert [n for n in range(1, 37) if discount_for(n, 1000)] == [12, 24, 36]
    assert discount_for(12, 1000) == 250


def test_from_v1_reshapes_and_keeps_the_deadline() -> None:
    started = datetime(2026, 1, 31, tzinfo=UTC)
    old = {
        "customer_id": "c1",
        "plan": "pro",
        "price_cents": 1500,
        "renewals": 3,
        "started_at": started.isoformat(),
        "next_renewal": renewal_due(started, 4, None).isoformat(),
        "renew_every_s": None,
        "last_receipt": "rcpt-x",
        "cancelled": False,
    }
    new = from_v1(Continuation(state=old, state_version="subscription/1"))
    assert new.plan.name == "pro" and new.plan.price_cents == 1500
    assert new.renewals == 3 and new.history == []
    assert new.next_renewal == datetime(2026, 5, 31, tzinfo=UTC)
    with pytest.raises(ValueError, match="price_cents"):
        from_v1(Continuation(state={**old, "price_cents": -1}, state_version="subscription/1"))
    with pytest.raises(ValueError, match="subscription/3"):
        from_v1(Continuation(state=old, state_version="subscription/3"))


async def test_a_year_of_renewals_across_the_move(time_env: WorkflowEnvironment) -> None:
    client = time_env.client
    prefix = f"ts-{uuid.uuid4().hex[:8]}-"
    q1, q2 = task_queue("v1", prefix), task_queue("v2", prefix)
    async with build_worker(client, "v1", q1), build_worker(client, "v2", q2):
        handle = await client.start_workflow(
            WORKFLOW_NAME,
            SubscriptionStart(customer_id="c1", plan="standard", price_cents=1000),
            id=f"{prefix}c1",
            task_queue=q1,
            result_type=SubscriptionResult,
        )
        try:
            await year_across_the_move(time_env, handle, q1, q2)
        finally:  # a stray timer on a stopped worker would stop time skipping for the rest of the session
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(handle.id).terminate("test over")


async def year_across_the_move(
    time_env: WorkflowEnvironment, handle: WorkflowHandle[Any, SubscriptionResult], q1: str, q2: str
) -> None:
    client = time_env.client
    first = await eventually(lambda: status(client, handle.id), lambda s: s["version"] == "v1")
    first_run = (await locate(client, handle.id)).run_id
    started = datetime.fromisoformat(first["state"]["started_at"])

    # Eleven monthly renewals on v1 (each a charge inside no_migrate).
    await time_env.sleep(timedelta(days=350))
    v1_state = (await eventually(lambda: status(client, handle.id), lambda s: s["state"]["renewals"] == 11))["state"]
    assert v1_state["last_receipt"] == f"rcpt-{handle.id}/11"
    assert datetime.fromisoformat(v1_state["next_renewal"]) == add_months(started, 12)
    await handle.signal("change_plan", ChangePlan(plan="premium", price_cents=2000))

    # Move to v2: state reshaped, deadline kept, the renewal timer carried.
    await signal_migrate(client, handle.id, q2)
    moved_run = (await wait_for_task_queue(client, handle.id, q2, timeout=10)).run_id
    moved = await status(client, handle.id)
    assert moved["version"] == "v2" and moved["nextDiscountedRenewal"] == 12
    assert moved["state"]["plan"] == {"name": "premium", "price_cents": 2000}
    assert moved["state"]["renewals"] == 11 and moved["state"]["history"] == []
    assert moved["state"]["next_renewal"] == v1_state["next_renewal"]
    snap = await snapshot(client, handle.id)
    assert snap.migrated_from == q1 and snap.state_version == "subscription/2"
    assert snap.timers["renewal"] == datetime.fromisoformat(v1_state["next_renewal"])

    # The twelfth renewal happens on v2, on the same deadline, with v2's loyalty discount.
    await time_env.sleep(timedelta(days=31))
    after = await eventually(lambda: status(client, handle.id), lambda s: s["state"]["renewals"] == 12)
    [renewal] = after["state"]["history"]
    assert renewal["number"] == 12 and renewal["discount_cents"] == 500 and renewal["amount_cents"] == 1500
    charged_at = datetime.fromisoformat(renewal["charged_at"])
    assert timedelta(0) <= charged_at - add_months(started, 12) < timedelta(seconds=5)

    await handle.signal("cancel")
    result = await handle.result()
    assert result == SubscriptionResult(customer_id="c1", renewals=12, version="v2")

    # Both versions replay their runs deterministically (charges, the move, the carried timer).
    for version, run_id in (("v1", first_run), ("v2", moved_run)):
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        replayer = Replayer(workflows=[WORKFLOWS[version]], data_converter=pydantic_data_converter)
        await replayer.replay_workflow(history)
