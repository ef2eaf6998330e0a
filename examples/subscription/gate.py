"""The sample gate (docs/gates.md): a smoke test the CI runs on a new version's task queue before any traffic.

    diachronic deploy subscription v2 --gate subscription-smoke --gate-input '{"priceCents": 1500}'

Its worker is the version's own worker (``examples.subscription.worker`` registers it next to the subscription),
so the gate runs the new code: it charges a test customer through the version's ``charge`` activity and checks
the receipt. Whatever it raises (or a run longer than ``--gate-timeout``) aborts the deployment before step 1,
with its message in ``diachronic status``.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from examples.subscription.activities import charge
    from examples.subscription.shared import ChargeInput

GATE_WORKFLOW = "subscription-smoke"


class SmokeInput(BaseModel):
    price_cents: int = Field(default=1500, ge=0, alias="priceCents")


class SmokeResult(BaseModel):
    receipt_id: str
    task_queue: str


@workflow.defn(name=GATE_WORKFLOW)
class SubscriptionSmokeTest:
    @workflow.run
    async def run(self, input: SmokeInput | None = None) -> SmokeResult:
        price = (input or SmokeInput()).price_cents
        receipt = await workflow.execute_activity(
            charge,
            ChargeInput(
                customer_id="smoke-test",
                renewal=0,
                amount_cents=price,
                idempotency_key=f"{workflow.info().workflow_id}/smoke",
            ),
            start_to_close_timeout=timedelta(seconds=30),
        )
        if receipt.amount_cents != price:
            raise ApplicationError(
                f"charged {receipt.amount_cents} cents instead of {price}", type="SmokeTestFailed", non_retryable=True
            )
        return SmokeResult(receipt_id=receipt.receipt_id, task_queue=workflow.info().task_queue)
