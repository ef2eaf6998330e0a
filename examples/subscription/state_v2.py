"""v2's state: the plan is an object, renewals are kept in a history; and how v1's state becomes it (``from_v1``).

v2 keeps its own copy of v1's state shape (``V1State``) so that it never imports v1's code. Apart from the workflow
module so that the workflow sandbox imports it once, not again for every run (``imports_passed_through``): a
migration wave starts one run per subscription, and building pydantic models for each costs milliseconds.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from diachronic.migrate import Continuation

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
