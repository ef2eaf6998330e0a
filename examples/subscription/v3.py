"""Subscription v3: a **broken** build, for the gates (docs/gates.md). Do not copy it.

It is v2 with one bug, so it keeps v2's state shape (``subscription/2``): a v2 subscription moves here as is, and
could move back (v2 restores its own state version). Its bug: the renewal loop raises before anything else, so every
workflow task of a v3 subscription fails — a new start as well as a subscription the migration moved here. Temporal
keeps retrying the task and flags the workflow (``TemporalReportedProblems``): it is stuck, not lost (its history and
state stay; a worker with fixed code on this task queue resumes it), and the health analysis aborts the deployment.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():  # deterministic modules: no need to re-import them per run
    from diachronic.migrate import MigrationEnvelope
    from examples.subscription import WORKFLOW_NAME, v2
    from examples.subscription.shared import SubscriptionResult, SubscriptionStart

VERSION = "v3"
BUG = "v3 bug: the renewal price table is empty"


@workflow.defn(name=WORKFLOW_NAME)
class SubscriptionWorkflow(v2.SubscriptionWorkflow):
    @workflow.run
    async def run(self, arg: MigrationEnvelope | SubscriptionStart) -> SubscriptionResult:
        return await self.run_migratable(self.main)

    async def main(self) -> SubscriptionResult:
        # A plain exception (not an ApplicationError) fails the workflow task, not the workflow.
        raise RuntimeError(f"{BUG} (plan {self.state.plan.name!r})")

    @workflow.query
    def status(self) -> dict[str, Any]:
        return {"version": VERSION, "state": self.state.model_dump(mode="json")}
