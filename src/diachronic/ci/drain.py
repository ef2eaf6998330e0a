"""Migration and cleanup: drain the old version's task queue, then retire it (delete its workers, archive its
flag). Migration signals eligible workflows to move; cleanup (non-migratory workflows) only waits.

Both share ``Drainer``: the safety check before retiring and the retirement itself are one piece of code."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from diachronic.ci import planning
    from diachronic.ci.activities import CIActivities
    from diachronic.ci.contracts import (
        CleanupRun,
        CountRunningInput,
        DeleteWorkersInput,
        DrainResult,
        DrainState,
        FindWorkersInput,
        FlagNameInput,
        ListFlagsInput,
        MigrateBatchInput,
        MigrationCounts,
        MigrationInput,
        MigrationRun,
        RetireInput,
    )
    from diachronic.ci.steps import call, history_is_long

MIGRATION_WORKFLOW = "migration"
CLEANUP_WORKFLOW = "cleanup"
STATUS_QUERY = "status"


def migration_workflow_id(workflow_name: str) -> str:
    return f"migration.{workflow_name}"


def cleanup_workflow_id(old_task_queue: str) -> str:
    return f"cleanup.{old_task_queue}"


class Drainer:
    """State and steps shared by the migration and cleanup workflows."""

    def __init__(self, input: RetireInput, state: DrainState | None) -> None:
        self.input = input
        self.state = state or DrainState()
        self._paused = False

    def record_wait(self, reason: str | None) -> None:
        self.state.last_error = reason

    def counts(self) -> MigrationCounts:
        return MigrationCounts(
            eligible=self.state.eligible,
            signalled=self.state.signalled_total,
            on_old_queue=self.state.running_on_old_queue,
        )

    def should_continue_as_new(self) -> bool:
        """Only after this run has paused once: a fresh run never hands over before doing any work."""
        if not self._paused:
            return False
        return history_is_long(self.input.continue_as_new_after)

    async def poll_pause(self) -> None:
        await workflow.sleep(timedelta(seconds=self.input.poll_interval_s))
        self._paused = True

    async def count_running(self) -> int:
        result = await call(
            CIActivities.count_running,
            CountRunningInput(task_queue=self.input.from_version.task_queue),
            on_wait=self.record_wait,
        )
        self.state.running_on_old_queue = result.running
        return result.running

    async def retire_blocker(self) -> planning.RetireBlocker | None:
        """Checked right before retiring, against fresh data: running count and the flags' routing."""
        running = await self.count_running()
        flags = await call(
            CIActivities.list_version_flags,
            ListFlagsInput(workflow_name=self.input.workflow_name),
            on_wait=self.record_wait,
        )
        blocker = planning.retire_blocker(flags.flags, self.input.from_version, running)
        self.state.waiting_for = blocker.value if blocker else None
        return blocker

    async def retire(self) -> DrainResult:
        old = self.input.from_version
        found = await call(
            CIActivities.find_workers,
            FindWorkersInput(workflow_name=old.workflow_name, version_id=old.version_id),
            on_wait=self.record_wait,
        )
        # A roll-back by redeploy of this very version may wait in the CI's queue: its workers will serve again.
        keep = old.version_id in found.queued_versions
        if keep:
            workflow.logger.info("workers of %s kept: a queued deployment makes it live again", old.version_id)
        for worker_set in [] if keep else found.worker_sets:
            await call(
                CIActivities.delete_workers,
                DeleteWorkersInput(worker_set=worker_set),
                on_wait=self.record_wait,
                timeout=timedelta(seconds=60),
            )
            self.state.deleted_workers = [*self.state.deleted_workers, f"{worker_set.namespace}/{worker_set.name}"]
        await call(
            CIActivities.archive_version_flag,
            FlagNameInput(flag_name=old.flag_name, workflow_name=old.workflow_name),
            on_wait=self.record_wait,
        )
        self.state.retired = True
        workflow.logger.info(
            "retired %s: workers %s deleted, flag archived", old.task_queue, self.state.deleted_workers
        )
        return DrainResult(
            signalled=self.state.signalled_total,
            deleted_workers=self.state.deleted_workers,
            archived_flag=old.flag_name,
        )


@workflow.defn(name=MIGRATION_WORKFLOW)
class MigrationWorkflow:
    """Signal each eligible old workflow once (in bounded batches), wait for the old queue to empty, retire it."""

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
            action = planning.next_migration_action(
                eligible_unsignalled=batch.eligible_unsignalled + batch.failed,
                running_on_old_queue=batch.running_on_old_queue,
            )
            if action is planning.MigrationAction.RETIRE and await self.drain.retire_blocker() is None:
                return await self.drain.retire()
            if self.drain.should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(MigrationRun(input=self.input, state=state))
            if action is not planning.MigrationAction.SIGNAL_MORE or batch.failed:
                await self.drain.poll_pause()


@workflow.defn(name=CLEANUP_WORKFLOW)
class CleanupWorkflow:
    """Non-migratory versions: wait until nothing runs on the old queue and no traffic reaches it, then retire."""

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
            if await self.drain.retire_blocker() is None:
                return await self.drain.retire()
            if self.drain.should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(CleanupRun(input=self.input, state=self.drain.state))
            await self.drain.poll_pause()
