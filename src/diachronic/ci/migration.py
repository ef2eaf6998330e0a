"""The migration workflow: signal each eligible old workflow once (in bounded batches), wait for the old queue to
drain, then retire the old version (``diachronic.ci.retire``)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from diachronic.ci.activities import CIActivities
    from diachronic.ci.contracts import (
        MIGRATION_WORKFLOW,
        STATUS_QUERY,
        DrainResult,
        DrainState,
        MigrateBatchInput,
        MigrationInput,
        MigrationRun,
    )
    from diachronic.ci.planner import migration
    from diachronic.ci.retire import Drainer
    from diachronic.ci.steps import call


@workflow.defn(name=MIGRATION_WORKFLOW)
class MigrationWorkflow:
    @workflow.init
    def __init__(self, run: MigrationRun) -> None:
        self.input: MigrationInput = run.input
        self.drain = Drainer(run.input, run.state)

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> DrainState:
        return self.drain.state

    @workflow.run
    async def run(self, run: MigrationRun) -> DrainResult:
        state = self.drain.state
        while True:
            state.iterations += 1
            batch = await call(
                CIActivities.migrate_batch,
                MigrateBatchInput(
                    workflow_name=self.input.workflow_name,
                    from_task_queue=self.input.from_version.task_queue,
                    to_version=self.input.to_version,
                    already_signalled=state.in_flight,
                    batch_size=self.input.batch_size,
                    concurrency=self.input.concurrency,
                ),
                on_wait=self.drain.record_wait,
                timeout=timedelta(minutes=5),
                heartbeat=timedelta(seconds=30),
            )
            state.in_flight = [*batch.still_signalled, *batch.signalled]
            state.signalled_total += len(batch.signalled)
            state.eligible = batch.eligible
            state.running_on_old_queue = batch.running_on_old_queue
            action = migration.next_migration_action(
                eligible_unsignalled=batch.eligible_unsignalled + batch.failed,
                running_on_old_queue=batch.running_on_old_queue,
            )
            if action is migration.MigrationAction.RETIRE and await self.drain.retire_blocker() is None:
                return await self.drain.retire()
            if self.drain.should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(MigrationRun(input=self.input, state=state))
            if action is not migration.MigrationAction.SIGNAL_MORE or batch.failed:
                await self.drain.poll_pause()
