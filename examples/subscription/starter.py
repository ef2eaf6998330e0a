"""Start some subscriptions on a version's task queue (for demos): ``python -m examples.subscription.starter``.

    python -m examples.subscription.starter --count 10 --task-queue subscription-v1 --renew-every 20

Uses the same ``DIACHRONIC_TEMPORAL_*`` settings as the workers; prints one workflow id per line.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from temporalio.client import Client

from diachronic.process import exit_with
from diachronic.settings import load_settings
from diachronic.temporal import connect
from examples.subscription import WORKFLOW_NAME, task_queue
from examples.subscription.shared import SubscriptionStart

PLANS = (("basic", 900), ("standard", 1500), ("premium", 2500))


async def start_subscriptions(
    client: Client,
    *,
    count: int,
    queue: str,
    id_prefix: str = "subscription-",
    renew_every_s: float | None = None,
) -> list[str]:
    """Start ``count`` subscriptions (ids ``<prefix>customer-<n>``) on ``queue``; returns their ids."""

    async def one(n: int) -> str:
        plan, price = PLANS[n % len(PLANS)]
        start = SubscriptionStart(
            customer_id=f"customer-{n}", plan=plan, price_cents=price, renew_every_s=renew_every_s
        )
        handle = await client.start_workflow(WORKFLOW_NAME, start, id=f"{id_prefix}customer-{n}", task_queue=queue)
        return handle.id

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def _run(count: int, queue: str, prefix: str, renew_every_s: float | None) -> None:
    client = await connect(load_settings())
    for workflow_id in await start_subscriptions(
        client, count=count, queue=queue, id_prefix=prefix, renew_every_s=renew_every_s
    ):
        print(workflow_id)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="examples.subscription.starter")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--task-queue", default=task_queue("v1"))
    parser.add_argument("--id-prefix", default="subscription-")
    parser.add_argument("--renew-every", type=float, default=None, help="seconds between renewals (default: monthly)")
    args = parser.parse_args(argv)
    asyncio.run(_run(args.count, args.task_queue, args.id_prefix, args.renew_every))
    return 0


if __name__ == "__main__":
    exit_with(main())
