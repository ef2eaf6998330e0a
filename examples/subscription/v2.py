"""Subscription v2: the plan is an object, renewals are kept in a history, every 12th renewal is discounted.

Running v1 subscriptions arrive here through ``diachronic.v1.migrate``; :func:`from_v1` reshapes their state.
v2 keeps its own copy of v1's state shape (``V1State``) so that it never imports v1's code.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():  # deterministic modules: no need to re-import them per run
    from diachronic.migrate import Continuation, MigratableWorkflow, MigrationEnvelope
    from examples.subscription import WORKFLOW_NAME
    from examples.subscription.activities import charge
    from examples.subscription.shared import (
        ChangePlan,
        ChargeInput,
        SubscriptionResult,
        SubscriptionStart,
        renewal_due,
    )

VERSION = "v2"
STATE_VERSION = "subscription/2"
LOYALTY_EVERY = 12
LOYALTY_DISCOUNT_PERCENT = 25
HISTORY_LIMIT = 24
"""Only the last renewals are kept: the state travels in every continue-as-new and must stay small."""


class Plan(BaseModel):
    name: str
    price_cents: int = Field(ge=0)


class Renewal(BaseModel):
    number: int
    charged_at: datetime
    amount_cents: int
    discount_cents: int
    receipt_id: str


class SubscriptionState(BaseModel):
    customer_id: str
    plan: Plan
    renewals: int = 0
    started_at: datetime
    next_renewal: datetime
    renew_every_s: float | None = None
    history: list[Renewal] = Field(default_factory=list)
    cancelled: bool = False


class V1State(BaseModel):
    """The state v1 carries in its envelope (``subscription/1``)."""

    customer_id: str
    plan: str
    price_cents: int = Field(ge=0)
    renewals: int = Field(ge=0)
    started_at: datetime
    next_renewal: datetime
    renew_every_s: float | None = None
    last_receipt: str | None = None
    cancelled: bool = False


def from_v1(continuation: Continuation) -> SubscriptionState:
    """v1 → v2: plan becomes an object; the renewal count and the next deadline are kept as they were.

    v1 kept no history (only the last receipt), so the history starts empty: inventing past charges would be
    worse than not listing them.
    """
    if continuation.state_version != "subscription/1":
        raise ValueError(f"v2 can only upgrade subscription/1 state, got {continuation.state_version!r}")
    old = continuation.state_as(V1State)
    return SubscriptionState(
        customer_id=old.customer_id,
        plan=Plan(name=old.plan, price_cents=old.price_cents),
        renewals=old.renewals,
        started_at=old.started_at,
        next_renewal=old.next_renewal,
        renew_every_s=old.renew_every_s,
        cancelled=old.cancelled,
    )


def discount_for(renewal: int, price_cents: int) -> int:
    """The loyalty discount of renewal number ``renewal``: every 12th one is 25 % cheaper."""
    return price_cents * LOYALTY_DISCOUNT_PERCENT // 100 if renewal % LOYALTY_EVERY == 0 else 0


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
