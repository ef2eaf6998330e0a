"""What both versions agree on: the start input, signal payloads, the charge activity's I/O, the result.

These shapes are the workflow's public interface; they stay compatible across versions so that callers do not
need to know which version a subscription runs on. Only the internal state changes shape (see v1/v2).
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from pydantic import BaseModel, Field


class SubscriptionStart(BaseModel):
    """Start a subscription; ``renew_every_s`` replaces the calendar month with a fixed period (demos)."""

    customer_id: str = Field(min_length=1)
    plan: str = Field(min_length=1)
    price_cents: int = Field(ge=0)
    renew_every_s: float | None = Field(default=None, gt=0)


class ChangePlan(BaseModel):
    """Signal ``change_plan``: takes effect from the next renewal."""

    plan: str = Field(min_length=1)
    price_cents: int = Field(ge=0)


class ChargeInput(BaseModel):
    customer_id: str
    renewal: int
    amount_cents: int
    idempotency_key: str


class Receipt(BaseModel):
    receipt_id: str
    amount_cents: int


class SubscriptionResult(BaseModel):
    """Returned when the subscription is cancelled."""

    customer_id: str
    renewals: int
    version: str


def add_months(moment: datetime, months: int) -> datetime:
    """Same day-of-month ``months`` later, clamped to the month's last day (Jan 31 + 1 → Feb 28/29)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def renewal_due(started_at: datetime, renewal: int, renew_every_s: float | None) -> datetime:
    """When renewal number ``renewal`` (1-based) is due: computed from the start, so it never drifts."""
    if renew_every_s is not None:
        return started_at + timedelta(seconds=renew_every_s * renewal)
    return add_months(started_at, renewal)
