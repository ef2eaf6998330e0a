"""v1's state: flat (plan name and price, a renewal count). Apart from the workflow module so that the workflow
sandbox imports it once, not again for every run (``imports_passed_through``): a migration wave starts one run per
subscription, and building pydantic models for each costs milliseconds."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

STATE_VERSION = "subscription/1"


class SubscriptionState(BaseModel):
    customer_id: str
    plan: str
    price_cents: int
    renewals: int = 0
    started_at: datetime
    next_renewal: datetime
    renew_every_s: float | None = None
    last_receipt: str | None = None
    cancelled: bool = False
