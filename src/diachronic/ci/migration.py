"""The migration workflow: sweep the old queue, signalling each eligible old workflow once (the sweeps and their
pacing: ``diachronic.ci.planner.sweep``), wait for the old queue to drain, then retire the old version
(``diachronic.ci.retire``), or hand that to a cleanup workflow when a deployment of the old version waits in the CI's
queue or the retire delay counts down (``planner.migration.after_drain``). What it tells (``migration_done``,
``retired``) goes out through the outbox in its state; what is left at its end goes back to the CI.
A roll-back's migrate-back (``retire=False``) ends after one whole sweep: the version it leaves is the newest and
stays.

With a canary cohort (``deploy --migrate-canary``) it asks ``planner.canary`` before each sweep: while the cohort
moves, a sweep signals only its remaining members (among those its query matches); then it signals nothing until the
soak ends, while the health workflow watches the cohort on the new version (a failure there aborts the deployment,
which cancels this workflow); then the rest moves as usual.

Its state is bounded whatever the number of workflows: the cursor of the sweep in progress and counters. A run that
continues-as-new mid-sweep carries the cursor, and the next call of the migrate activity goes on from it."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from diachronic.ci.activities import CIActivities
    from diachronic.ci.contracts import (
        MIGRATION_PAGES_PER_CALL,
        MIGRATION_WORKFLOW,
        STATUS_QUERY,
        CanaryPhase,
        Cohort,
        CountRunningInput,
        DrainResult,
        ListFlagsInput,
        MigrationInput,
        MigrationRun,
        MigrationState,
        SweepInput,
    )
    from diachronic.ci.planner import canary, migration, sweep
    from diachronic.ci.retire import Drainer
    from diachronic.flags import VersionFlag

SWEEP_ATTEMPT_TIMEOUT = timedelta(minutes=5)
SWEEP_HEARTBEAT = timedelta(seconds=10)
"""A dead attempt is retried this soon, from its last heartbeat (sent at most every 8 s: Temporal throttles them)."""


@workflow.defn(name=MIGRATION_WORKFLOW)
class MigrationWorkflow:
    @workflow.init
    def __init__(self, run: MigrationRun) -> None:
        self.input: MigrationInput = run.input
        self.state = run.state or MigrationState()
        self.drain = Drainer(run.input, self.state)
        self.pacing = run.input.pacing

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> MigrationState:
        return self.state

    @workflow.run
    async def run(self, run: MigrationRun) -> DrainResult:
        state = self.state
        while True:
            state.iterations += 1
            flags = await self._flags()
            cohort_plan, state.canary = canary.look(self.input.canary, state.canary, workflow.now())
            if state.sweep is None:
                plan = sweep.next_sweep(state.sweeps, await self._observe(flags), workflow.now(), self.pacing)
                state.pacing, state.next_sweep_at = plan.reason, plan.sweep_due
                if plan.action is sweep.SweepAction.DRAINED:
                    retiring, worker_sets = await self.drain.plan()
                    after = migration.after_drain(retiring)
                    if after is migration.MigrationAction.RETIRE:
                        return await self.drain.hand_back(await self.drain.retire(retiring, worker_sets))
                    if after is migration.MigrationAction.HAND_OFF:
                        return await self.drain.hand_back(self.drain.result(archived=False, handed_off=True))
                soaking = cohort_plan.phase is CanaryPhase.SOAK  # the cohort soaks: nothing moves until its end
                if plan.action is not sweep.SweepAction.SWEEP or soaking:
                    until = plan.at
                    if soaking and plan.sweep is not None:  # look again a poll later at most (it may drain)
                        poll = workflow.now() + timedelta(seconds=self.input.poll_interval_s)
                        until = min(cohort_plan.soak_until or poll, poll)
                    await self.drain.poll_pause(self._seconds_until(until))
                state.sweep = None if soaking else canary.cohort_sweep(plan.sweep, cohort_plan)
            if state.sweep is not None:
                await self._go_on(state.sweep, flags, cohort_plan.cohort)
                if state.sweep is None and not self.input.retire:
                    # A roll-back's migrate-back: a whole sweep signalled every workflow, each moves at its next
                    # safe point (a stuck one never would: waiting for it would hold the roll-back); the version
                    # it leaves is the newest and stays.
                    return self.drain.result(archived=False)
            if self.drain.should_continue_as_new():
                await self.drain.continue_as_new(MigrationRun(input=self.input, state=state))

    async def _flags(self) -> list[VersionFlag]:
        listed = await self.drain.step(
            CIActivities.list_version_flags, ListFlagsInput(workflow_name=self.input.workflow_name)
        )
        return listed.flags

    async def _observe(self, flags: list[VersionFlag]) -> sweep.QueueObservation:
        counted = await self.drain.step(
            CIActivities.count_running, CountRunningInput(task_queue=self.input.from_version.task_queue)
        )
        self.state.running_on_old_queue = counted.running
        return sweep.QueueObservation(
            running_on_old_queue=counted.running,
            routing=migration.routing_key(flags),
            routes_new=migration.may_route_to(flags, self.input.to_version.task_queue),
        )

    async def _go_on(self, current: sweep.Sweep, flags: list[VersionFlag], cohort: Cohort | None) -> None:
        """One call of the migrate activity: the sweep's next pages from its cursor, under the flags just read."""
        progress = await self.drain.step(
            CIActivities.migrate_sweep,
            SweepInput(
                workflow_name=self.input.workflow_name,
                from_task_queue=self.input.from_version.task_queue,
                to_version=self.input.to_version,
                flags=flags,
                covered=current.covered,
                recheck=current.recheck,
                since=current.since,
                cursor=current.cursor,
                batch_size=self.input.batch_size,
                pages=MIGRATION_PAGES_PER_CALL,
                concurrency=self.input.concurrency,
                cohort=cohort if current.cohort else None,
            ),
            attempt_timeout=SWEEP_ATTEMPT_TIMEOUT,
            heartbeat=SWEEP_HEARTBEAT,
        )
        state = self.state
        state.sweep, state.sweeps = sweep.record_progress(current, state.sweeps, progress, flags, workflow.now())
        state.signalled_total = state.sweeps.signalled
        if current.cohort and state.canary is not None:
            state.canary = canary.record_cohort(state.canary, progress)
        if state.sweep is None:  # it ended: the next look decides what comes next
            state.pacing = state.next_sweep_at = None
            if current.cohort:  # a cohort's sweep covers nothing: the next is full, a poll later
                await self.drain.poll_pause()
        elif progress.stalled:
            await self.drain.poll_pause()
        state.eligible = state.sweep.eligible if state.sweep is not None else state.sweeps.eligible
        self.drain.progressed()

    def _seconds_until(self, moment: datetime | None) -> float | None:
        return None if moment is None else max((moment - workflow.now()).total_seconds(), 0.0)
