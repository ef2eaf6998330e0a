"""Workflows that CI tests deploy. Dynamic, so each test can use its own workflow name (= workflow type)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue

from diachronic.contracts import MIGRATE_SIGNAL

FINISH_SIGNAL = "finish"


@workflow.defn(dynamic=True)
class Sleeper:
    """Waits until told to finish; obeys the migrate signal by continuing-as-new, like the original's SDK."""

    def __init__(self) -> None:
        self.target: str | None = None
        self.finished = False
        self.migrate_signals = 0

    @workflow.signal(name=MIGRATE_SIGNAL)
    def migrate(self, arg: Any) -> None:
        self.migrate_signals += 1
        queue = arg.get("taskQueue") if isinstance(arg, dict) else None
        if isinstance(queue, str) and queue and queue != workflow.info().task_queue:
            self.target = queue

    @workflow.signal(name=FINISH_SIGNAL)
    def finish(self) -> None:
        self.finished = True

    @workflow.query(name="where")
    def where(self) -> dict[str, Any]:
        return {"taskQueue": workflow.info().task_queue, "migrateSignals": self.migrate_signals}

    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> str:
        await workflow.wait_condition(lambda: self.target is not None or self.finished)
        if self.finished:
            return workflow.info().task_queue
        workflow.continue_as_new(
            args=[workflow.payload_converter().from_payload(a.payload) for a in args], task_queue=self.target
        )
