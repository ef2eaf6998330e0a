"""The retire step shared by the migration and cleanup workflows: drain state, the safety check right before
retiring, and the retirement itself (delete the old version's workers, archive its flag) in one piece of code."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from diachronic.ci.activities import CIActivities
    from diachronic.ci.contracts import (
        CountRunningInput,
        DeleteWorkersInput,
        DrainResult,
        DrainState,
        FindWorkersInput,
        FlagNameInput,
        ListFlagsInput,
        MigrationCounts,
        RetireInput,
    )
    from diachronic.ci.planner import retire
    from diachronic.ci.steps import call, history_is_long


class Drainer:
    """State and steps shared by the migration and cleanup workflows."""

    def __init__(self, input: RetireInput, state: DrainState | None) -> None:
        self.input = input
        self.state = state or DrainState()
        self._slept_once = False

    def record_wait(self, reason: str | None) -> None:
        self.state.last_error = reason

    def counts(self) -> MigrationCounts:
        return MigrationCounts(
            eligible=self.state.eligible,
            signalled=self.state.signalled_total,
            on_old_queue=self.state.running_on_old_queue,
        )

    def should_continue_as_new(self) -> bool:
        """Only after this run has slept once: a fresh run never hands over before doing any work."""
        if not self._slept_once:
            return False
        return history_is_long(self.input.continue_as_new_after)

    async def poll_pause(self) -> None:
        await workflow.sleep(timedelta(seconds=self.input.poll_interval_s))
        self._slept_once = True

    async def count_running(self) -> int:
        result = await call(
            CIActivities.count_running,
            CountRunningInput(task_queue=self.input.from_version.task_queue),
            on_wait=self.record_wait,
        )
        self.state.running_on_old_queue = result.running
        return result.running

    async def retire_blocker(self) -> retire.RetireBlocker | None:
        """Checked right before retiring, against fresh data: running count and the flags' routing."""
        running = await self.count_running()
        flags = await call(
            CIActivities.list_version_flags,
            ListFlagsInput(workflow_name=self.input.workflow_name),
            on_wait=self.record_wait,
        )
        blocker = retire.retire_blocker(flags.flags, self.input.from_version, running)
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
