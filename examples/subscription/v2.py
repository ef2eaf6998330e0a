"""Subscription v2: the plan is an object, renewals are kept in a history, every 12th renewal is discounted.

Running v1 subscriptions arrive here through ``diachronic.v1.migrate``; :func:`from_v1` reshapes their state.
Its state, and v1's state shape that ``from_v1`` reads, live in ``examples.subscription.state_v2``.
"""

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
    from examples.subscription.state_v2 import (
        HISTORY_LIMIT,
        LOYALTY_EVERY,
        STATE_VERSION,
        Plan,
        Renewal,
        SubscriptionState,
        discount_for,
        from_v1,
    )

VERSION = "v2"


@workflow.defn(name=WORKFLOW_NAME)
class SubscriptionWorkflow(MigratableWorkflow[SubscriptionState]):
    @workflow.init
    def __init__(self, arg: MigrationEnvelope | SubscriptionStart) -> None:
        self.init_state(
            arg,
            state_type=SubscriptionState,
            state_version=STATE_VERSION,
            initial_state=new_state,
            transform=from_v1,
        )

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
            discount = discount_for(number, s.plan.price_cents)
            async with self.no_migrate():
                receipt = await workflow.execute_activity(
                    charge,
                    ChargeInput(
                        customer_id=s.customer_id,
                        renewal=number,
                        amount_cents=s.plan.price_cents - discount,
                        idempotency_key=f"{workflow.info().workflow_id}/{number}",
                    ),
                    start_to_close_timeout=timedelta(seconds=30),
                )
                s.renewals = number
                s.history = [
                    *s.history,
                    Renewal(
                        number=number,
                        charged_at=workflow.now(),
                        amount_cents=receipt.amount_cents,
                        discount_cents=discount,
                        receipt_id=receipt.receipt_id,
                    ),
                ][-HISTORY_LIMIT:]
                s.next_renewal = renewal_due(s.started_at, number + 1, s.renew_every_s)
        return SubscriptionResult(customer_id=s.customer_id, renewals=s.renewals, version=VERSION)

    @workflow.signal
    def change_plan(self, change: ChangePlan) -> None:
        self.state.plan = Plan(name=change.plan, price_cents=change.price_cents)

    @workflow.signal
    def cancel(self) -> None:
        self.state.cancelled = True

    @workflow.query
    def status(self) -> dict[str, Any]:
        s = self.state
        next_discounted = (s.renewals // LOYALTY_EVERY + 1) * LOYALTY_EVERY
        return {
            "version": VERSION,
            "state": s.model_dump(mode="json"),
            "nextDiscountedRenewal": next_discounted,
        }


def new_state(start: SubscriptionStart) -> SubscriptionState:
    now = workflow.now()
    return SubscriptionState(
        customer_id=start.customer_id,
        plan=Plan(name=start.plan, price_cents=start.price_cents),
        started_at=now,
        next_renewal=renewal_due(now, 1, start.renew_every_s),
        renew_every_s=start.renew_every_s,
    )
