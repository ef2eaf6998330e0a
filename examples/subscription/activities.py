"""The one activity: charge the customer. Trivial on purpose (the sample is about the workflow's lifecycle)."""

from __future__ import annotations

from temporalio import activity

from examples.subscription.shared import ChargeInput, Receipt


@activity.defn
async def charge(request: ChargeInput) -> Receipt:
    """Pretend to charge; the idempotency key makes a retried charge the same charge."""
    return Receipt(receipt_id=f"rcpt-{request.idempotency_key}", amount_cents=request.amount_cents)
