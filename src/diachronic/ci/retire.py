"""The retire step shared by the migration and cleanup workflows: their drain state, the observation taken right
before retiring, and the retirement the planner (``diachronic.ci.planner.retire``) allows: archive the old flag,
then delete the old workers, or keep them.

Both tell what they see through an outbox in their state (``diachronic.ci.outbox``): ``migration_done`` once the
old queue is empty for good, ``retired`` once the old version is retired. A migration hands what it could not
publish back to the CI, which tells the deployment's end after it; a cleanup, which runs after that end, publishes
everything before it ends."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
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
        MigrationRun,
        ObserveWorkersInput,
        Phase,
        RetireInput,
    )
    from diachronic.ci.outbox import OUTBOX_SETTLE, PUBLISH_FOR, Outbox
    from diachronic.ci.planner import retire, retire_delay
    from diachronic.ci.planner.notifications import Progress, notifications
    from diachronic.ci.steps import history_is_long, run_step
    from diachronic.workers import WorkerSet

T = TypeVar("T")
DELETE_ATTEMPT_TIMEOUT = timedelta(seconds=60)


class Drainer:
    """State and steps shared by the migration and cleanup workflows."""

    def __init__(self, input: RetireInput, state: DrainState | None) -> None:
        self.input = input
        self.state = state or DrainState()
        self._progressed = False
        self.outbox = Outbox(self.state.outbox)

    async def step(self, activity: Callable[[Any, Any], Awaitable[T]], arg: Any, **kwargs: Any) -> T:
        """One step; a failure that ends the workflow is recorded in its state first (``status`` shows it)."""
        try:
            return await run_step(activity, arg, budget_s=self.input.step_timeout_s, **kwargs)
        except ApplicationError as error:
            self.state.failure = f"{error.type}: {error.message}"
            raise

    def should_continue_as_new(self) -> bool:
        """Only after this run has made progress (slept once, or moved a sweep on): a fresh run never hands over
        before doing any work."""
        if not self._progressed:
            return False
        return history_is_long(self.input.continue_as_new_after)

    async def continue_as_new(self, run: MigrationRun | CleanupRun) -> NoReturn:
        """Hand over to a fresh run: the publication in flight ends first, the rest travels in the state."""
        await self.outbox.settle(OUTBOX_SETTLE)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(run)

    async def hand_back(self, result: DrainResult) -> DrainResult:
        """A migration's end: the publication in flight ends, the rest goes to the CI with the result (the CI tells
        the deployment's end after it)."""
        await self.outbox.settle(OUTBOX_SETTLE)
        return result.model_copy(update={"unpublished": list(self.outbox.pending)})

    async def publish_all(self) -> None:
        """A cleanup's end: nobody takes over what is not published, so wait until it is (or given up)."""
        await self.outbox.flush(PUBLISH_FOR)

    def _tell(self, *, drained: bool, retired: bool) -> None:
        """Publish what the planner says this change of the drain produces (docs/pipeline.md)."""
        phase = self.input.ended or Phase.MIGRATING
        before = Progress(phase=phase, drained=self.state.drained, retired=self.state.retired)
        self.state.drained, self.state.retired = drained, retired
        if self.input.report is not None:
            after = Progress(phase=phase, drained=drained, retired=retired)
            self.outbox.add(notifications(self.input.report, before, after, now=workflow.now()))

    def progressed(self) -> None:
        self._progressed = True

    async def poll_pause(self, seconds: float | None = None) -> None:
        """Sleep ``seconds`` (a poll interval by default)."""
        await workflow.sleep(timedelta(seconds=self.input.poll_interval_s if seconds is None else seconds))
        self._progressed = True

    async def plan(self) -> tuple[retire.RetirePlan, list[WorkerSet]]:
        """Observe, right before retiring, what the retire rule needs; its plan, and the old version's worker sets.

        The worker sets, the versions the CI is deploying (a list of the cluster, a query of the CI) and the pollers
        of the newest version's queue are read only once everything else lets the workers go, and the rule is asked
        again with them; then the retire delay's countdown (``planner.retire_delay``) holds the plan until it runs
        out."""
        self.outbox.start()  # what a previous run left goes out first
        old = self.input.from_version
        running = await self.step(CIActivities.count_running, CountRunningInput(task_queue=old.task_queue))
        self.state.running_on_old_queue = running.running
        flags = await self.step(CIActivities.list_version_flags, ListFlagsInput(workflow_name=self.input.workflow_name))
        snapshot = retire.RetireSnapshot(old=old, flags=tuple(flags.flags), running_on_old_queue=running.running)
        plan, worker_sets = retire.plan_retire(snapshot), []
        if plan.delete_workers:
            found = await self.step(
                CIActivities.find_workers, FindWorkersInput(workflow_name=old.workflow_name, version_id=old.version_id)
            )
            deploying = tuple(found.deploying_versions)
            pollers = None
            if (successor := retire.successor_queue(snapshot.flags)) is not None:
                observed = await self.step(CIActivities.observe_workers, ObserveWorkersInput(task_queue=successor))
                pollers = observed.pollers
            plan = retire.plan_retire(dataclasses.replace(snapshot, deploying=deploying, new_queue_pollers=pollers))
            worker_sets = list(found.worker_sets)
        countdown = retire_delay.count_down(
            workflow.now(),
            delay=timedelta(seconds=self.input.retire_delay_s),
            ready=plan.delete_workers,
            ready_since=self.state.ready_since,
        )
        self.state.ready_since, self.state.retire_at = countdown.ready_since, countdown.retire_at
        plan = retire_delay.hold_while_counting(plan, countdown)
        self.state.waiting_for = plan.blocker.value if plan.blocker else None
        self._tell(drained=self.state.drained or retire.migration_done(snapshot, plan), retired=self.state.retired)
        return plan, worker_sets

    async def retire(self, plan: retire.RetirePlan, worker_sets: list[WorkerSet]) -> DrainResult:
        """Archive the old flag first (no traffic reaches it afterwards), then delete its workers, as planned."""
        old = self.input.from_version
        if plan.archive_flag:
            await self.step(
                CIActivities.archive_version_flag,
                FlagNameInput(flag_name=old.flag_name, workflow_name=old.workflow_name),
            )
        for worker_set in worker_sets if plan.delete_workers else []:
            await self.step(
                CIActivities.delete_workers,
                DeleteWorkersInput(worker_set=worker_set),
                attempt_timeout=DELETE_ATTEMPT_TIMEOUT,
            )
            self.state.deleted_workers = [*self.state.deleted_workers, f"{worker_set.namespace}/{worker_set.name}"]
        self.state.kept_workers = plan.kept_workers
        if plan.delete_workers:
            self._tell(drained=self.state.drained, retired=True)
        else:  # live again: the flag went, the workers serve the version's new flag; nothing retired to tell
            self.state.retired = True
        workflow.logger.info(
            "retired %s: flag %s, workers %s",
            old.task_queue,
            "archived" if plan.archive_flag else "already archived",
            f"kept ({plan.kept_workers})" if plan.kept_workers else f"{self.state.deleted_workers} deleted",
        )
        return self.result(archived=plan.archive_flag)

    def result(self, *, archived: bool, handed_off: bool = False) -> DrainResult:
        return DrainResult(
            signalled=self.state.signalled_total,
            deleted_workers=self.state.deleted_workers,
            archived_flag=self.input.from_version.flag_name if archived else None,
            kept_workers=self.state.kept_workers,
            handed_off=handed_off,
        )
