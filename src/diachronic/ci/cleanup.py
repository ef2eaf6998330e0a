"""The cleanup workflow: wait until the retire rule lets the old version go (nothing runs on its queue, no traffic
reaches it, no deployment of it waits), then retire it (``diachronic.ci.retire``). It serves non-migratory versions
and migrations that handed their retirement over; it runs on its own: the CI's queue does not wait for it, and it
publishes its own notifications before it ends."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from diachronic.ci.contracts import CLEANUP_WORKFLOW, STATUS_QUERY, CleanupRun, DrainResult, DrainState, RetireInput
    from diachronic.ci.retire import Drainer


@workflow.defn(name=CLEANUP_WORKFLOW)
class CleanupWorkflow:
    @workflow.init
    def __init__(self, run: CleanupRun) -> None:
        self.input: RetireInput = run.input
        self.drain = Drainer(run.input, run.state)

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> DrainState:
        return self.drain.state

    @workflow.run
    async def run(self, run: CleanupRun) -> DrainResult:
        if self.input.from_version.workflow_name != self.input.workflow_name:
            raise ApplicationError("cleanup of another workflow's version", type="InvalidInput", non_retryable=True)
        while True:
            self.drain.state.iterations += 1
            plan, worker_sets = await self.drain.plan()
            if plan.blocker is None:
                retired = await self.drain.retire(plan, worker_sets)
                await self.drain.publish_all()
                return retired
            if self.drain.should_continue_as_new():
                await self.drain.continue_as_new(CleanupRun(input=self.input, state=self.drain.state))
            await self.drain.poll_pause()
