"""The migration workflow: signal each eligible old workflow once (in bounded batches), wait for the old queue to
drain, then retire the old version (``diachronic.ci.retire``), or hand that to a cleanup workflow when a deployment
of the old version waits in the CI's queue (``planner.migration.after_drain``)."""

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

BATCH_ATTEMPT_TIMEOUT = timedelta(minutes=5)
BATCH_HEARTBEAT = timedelta(seconds=30)


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
            batch = await self.drain.step(
                CIActivities.migrate_batch,
                MigrateBatchInput(
                    workflow_name=self.input.workflow_name,
                    from_task_queue=self.input.from_version.task_queue,
                    to_version=self.input.to_version,
                    already_signalled=state.in_flight,
                    batch_size=self.input.batch_size,
                    concurrency=self.input.concurrency,
                ),
                attempt_timeout=BATCH_ATTEMPT_TIMEOUT,
                heartbeat=BATCH_HEARTBEAT,
            )
            state.in_flight = [*batch.still_signalled, *batch.signalled]
            state.signalled_total += len(batch.signalled)
            state.eligible = batch.eligible
            state.running_on_old_queue = batch.running_on_old_queue
            action = migration.next_migration_action(
                eligible_unsignalled=batch.eligible_unsignalled + batch.failed,
                running_on_old_queue=batch.running_on_old_queue,
            )
            if action is migration.MigrationAction.RETIRE:
                plan, worker_sets = await self.drain.plan()
                action = migration.after_drain(plan)
                if action is migration.MigrationAction.RETIRE:
                    return await self.drain.hand_back(await self.drain.retire(plan, worker_sets))
                if action is migration.MigrationAction.HAND_OFF:
                    return await self.drain.hand_back(self.drain.result(archived=False, handed_off=True))
            if self.drain.should_continue_as_new():
                await self.drain.continue_as_new(MigrationRun(input=self.input, state=state))
            if action is not migration.MigrationAction.SIGNAL_MORE or batch.failed:
                await self.drain.poll_pause()
