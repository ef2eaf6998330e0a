"""Subscription v1: renews monthly at the current price; state is flat (plan name + price, a renewal count)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():  # deterministic modules: no need to re-import them per run
    from diachronic.migrate import MigratableWorkflow, MigrationEnvelope
    from examples.subscription import WORKFLOW_NAME
    from examples.subscription.activities import charge
    from examples.subscription.shared import (
        ChangePlan,
        ChargeInput,
        SubscriptionResult,
        SubscriptionStart,
        renewal_due,
    )
    from examples.subscription.state_v1 import STATE_VERSION, SubscriptionState

VERSION = "v1"


@workflow.defn(name=WORKFLOW_NAME)
class SubscriptionWorkflow(MigratableWorkflow[SubscriptionState]):
    @workflow.init
    def __init__(self, arg: MigrationEnvelope | SubscriptionStart) -> None:
        self.init_state(arg, state_type=SubscriptionState, state_version=STATE_VERSION, initial_state=new_state)

    @workflow.run
    async def run(self, arg: MigrationEnvelope | SubscriptionStart) -> SubscriptionResult:
        return await self.run_migratable(self.main)

    async def main(self) -> SubscriptionResult:
        s = self.state
        while not s.cancelled:
            due = await self.sleep_until(s.next_renewal, name="renewal", wake_if=lambda: self.state.cancelled)
            if not due:
                break
            number = s.renewals + 1
            # Charge and record it as one step: a migration never lands between the two.
            async with self.no_migrate():
                receipt = await workflow.execute_activity(
                    charge,
                    ChargeInput(
                        customer_id=s.customer_id,
                        renewal=number,
                        amount_cents=s.price_cents,
                        idempotency_key=f"{workflow.info().workflow_id}/{number}",
                    ),
                    start_to_close_timeout=timedelta(seconds=30),
                )
                s.renewals = number
                s.last_receipt = receipt.receipt_id
                s.next_renewal = renewal_due(s.started_at, number + 1, s.renew_every_s)
        return SubscriptionResult(customer_id=s.customer_id, renewals=s.renewals, version=VERSION)

    @workflow.signal
    def change_plan(self, change: ChangePlan) -> None:
        self.state.plan, self.state.price_cents = change.plan, change.price_cents

    @workflow.signal
    def cancel(self) -> None:
        self.state.cancelled = True

    @workflow.query
    def status(self) -> dict[str, Any]:
        return {"version": VERSION, "state": self.state.model_dump(mode="json")}


def new_state(start: SubscriptionStart) -> SubscriptionState:
    now = workflow.now()
    return SubscriptionState(
        customer_id=start.customer_id,
        plan=start.plan,
        price_cents=start.price_cents,
        started_at=now,
        next_renewal=renewal_due(now, 1, start.renew_every_s),
        renew_every_s=start.renew_every_s,
    )
