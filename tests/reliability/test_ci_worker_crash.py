"""The CI worker (``diachronic worker``, its own process) is SIGKILLed in the middle of a migration sweep, then
restarted.

Temporal holds the deployment's state (the CI, rollout and migration workflows' histories) and the sweep's cursor
(the migrate activity's last heartbeat); the new process replays the histories, and the interrupted activity, retried
once its heartbeat times out, goes on from that cursor. The pages after the heartbeat were signalled by the dead
attempt and are signalled again: the same request ids, so Temporal drops the second signal."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from tests.conditions import eventually
from tests.reliability.harness import (
    COUNT,
    FAST_STEPS,
    RESTARTING,
    Report,
    Scenario,
    fault_test,
    measurement,
    options,
    scenario,
)

from diachronic.ci.contracts import MIGRATION_PAGES_PER_CALL, Phase, migration_workflow_id
from diachronic.ci.planner.sweep import SweepProgress

BUDGET_S = 300.0 + COUNT
pytestmark = fault_test(BUDGET_S)
DOWN_S = 2.0
FREEZE_AFTER_S = (0.02, 0.04, 0.01, 0.06, 0.03, 0.08)  # how long after a sweep call starts to look at it
SWEEP = "migrate_sweep"


async def sweep_mid_way(sc: Scenario) -> SweepProgress | None:
    """The last heartbeat Temporal holds of a migrate attempt in flight, when the sweep is mid-way (a cursor to go
    on from, pages left in the call); None otherwise."""
    description = await sc.client.get_workflow_handle(migration_workflow_id("subscription")).describe()
    for pending in description.raw_description.pending_activities:
        started = pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        if pending.activity_type.name == SWEEP and started and pending.heartbeat_details.payloads:
            progress = SweepProgress.model_validate_json(pending.heartbeat_details.payloads[0].data)
            if not progress.done and progress.cursor is not None and progress.pages < MIGRATION_PAGES_PER_CALL:
                return progress
    return None


async def sweep_in_flight(sc: Scenario) -> bool:
    description = await sc.client.get_workflow_handle(migration_workflow_id("subscription")).describe()
    return any(
        p.activity_type.name == SWEEP and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        for p in description.raw_description.pending_activities
    )


async def sweep_results(sc: Scenario) -> list[dict[str, Any]]:
    """Results of the completed migrate activities, from the migration workflow's own histories."""
    results = []
    async for execution in sc.client.list_workflows(f'WorkflowId="{migration_workflow_id("subscription")}"'):
        history = await sc.client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        scheduled = {
            e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        }
        for e in history.events:
            if e.HasField("activity_task_completed_event_attributes"):
                completed = e.activity_task_completed_event_attributes
                if scheduled.get(completed.scheduled_event_id) == SWEEP:
                    results.append(json.loads(completed.result.payloads[0].data))
    return results


async def test_ci_worker_sigkill_mid_migration_then_restart(tmp_path: Path, reliability_report: Report) -> None:
    async with scenario("ci_worker_sigkill", tmp_path, budget_s=BUDGET_S) as sc:
        await sc.go_live("v1", {"v1": "v1", "v2": "v2"})
        cancelled = await sc.cancel_some()

        sc.mark("deploy")
        await sc.deploy("v2", options(FAST_STEPS, batch=max(COUNT // 20, 2)))  # pages of a few runs: long sweeps
        await sc.until(
            lambda s: s.phase is Phase.ROLLING_OUT and (s.rollout_percent or 0) >= 10,
            timeout=120,
            what="the rollout to route some workflows to v2",
        )
        # The moment that matters: a sweep is mid-way and Temporal holds its cursor (the last heartbeat). The old
        # version's worker is frozen (SIGSTOP) so that the runs signalled after that heartbeat are still on the old
        # queue when the retry reaches them (it must signal them again, and Temporal must drop it); the CI worker is
        # frozen while a sweep is in flight until that moment is proven from Temporal; then it is killed.
        v1 = await sc.workers.find("subscription", "v1")
        assert v1 and v1[0].pid is not None
        os.killpg(v1[0].pid, signal.SIGSTOP)
        try:
            mid: SweepProgress | None = None
            for attempt in range(60):
                await eventually(
                    lambda: sweep_in_flight(sc),
                    timeout=60,
                    what="a migrate sweep in flight",
                    interval=0.01,
                    not_yet=RESTARTING,
                )
                await asyncio.sleep(FREEZE_AFTER_S[attempt % len(FREEZE_AFTER_S)])
                os.killpg(sc.ci_worker.pid, signal.SIGSTOP)
                mid = await sweep_mid_way(sc)
                if mid is not None:
                    break
                os.killpg(sc.ci_worker.pid, signal.SIGCONT)
            assert mid is not None, "never caught a sweep mid-way with its cursor in a heartbeat"
            before = sc.timeline.latest()
            killed_pid = sc.ci_worker.pid
            await sc.ci_worker.kill()
            sc.mark("fault_start")
            await asyncio.sleep(DOWN_S)  # the outage itself, not a wait for a condition
            since = datetime.now(UTC) - timedelta(seconds=0.5)
            sc.ci_worker.start()
            await sc.ci_worker.wait_polling(sc.client, since)
            fault_end = sc.mark("fault_end")

            at_page = mid.pages

            async def resumed() -> dict[str, Any] | None:
                return next((r for r in await sweep_results(sc) if r.get("resumedAtPage") == at_page), None)

            # v1 stays frozen until the retried attempt has gone on from the cursor and finished its pages.
            retried = await eventually(
                resumed, timeout=120, what="the retried sweep to go on from its cursor", not_yet=RESTARTING
            )
            sc.mark("sent_again")
        finally:
            os.killpg(v1[0].pid, signal.SIGCONT)

        result = await sc.ci_result(240)
        verdict = await sc.verdict(result, "v2")
        audit, record = verdict.audit, verdict.record
        percents = await sc.rollout_percents()
        progress = sc.timeline.first_change_after(fault_end)
        assert before is not None and before.migration is not None
        resumed_how = (
            "the rollout had moved meanwhile, so it stopped before reading a page under flags the store no longer "
            "held, and the next call went on from the same cursor"
            if retried["stale"]
            else f"it read {retried['rows'] - mid.rows} rows and signalled again the pages the dead attempt had sent "
            "after its heartbeat (Temporal dropped them: same request id)"
        )
        reliability_report.add(
            measurement(
                sc,
                verdict,
                fault="CI worker SIGKILLed mid-sweep, restarted",
                what_happened=(
                    f"killed pid {killed_pid} while a migrate sweep was mid-way (Temporal held its cursor, "
                    f"{mid.pages} pages into the call; v1's worker frozen), at {before.rollout_percent}%; restarted "
                    f"{DOWN_S:.0f} s later; the new process replayed the CI, rollout and migration histories; the lost "
                    f"attempt was retried after its heartbeat timeout and went on from that cursor: {resumed_how}; "
                    f"rollout steps {percents}; {audit.migrated_runs} runs migrated (diachronic's own counter: "
                    f"{record['migration']['signalled']}), v1 retired"
                ),
                fault_s=fault_end - sc.marks["fault_start"],
                recover_s=sc.marks["sent_again"] - fault_end,
                recovered_when=(
                    "the sweep went on from its cursor: the lost attempt retried after its 10 s heartbeat timeout; the "
                    f"rollout moved again after {progress - fault_end:.1f} s"
                    if progress is not None
                    else "the sweep went on from its cursor: the lost attempt retried after its 10 s heartbeat timeout"
                ),
                complete_s=sc.marks["completed"] - fault_end,
                cancelled=cancelled,
                resumed_at_page=mid.pages,
            )
        )
        assert record["phase"] == "completed", record
        verdict.assert_nothing_lost()
        assert percents == [0, 10, 25, 50, 75, 100]
        # It went on from the heartbeat: more pages, or none because the rollout moved meanwhile (the call stopped
        # before reading under flags the store no longer held; the next call went on from the same cursor).
        assert retried["resumedAtPage"] == mid.pages and (retried["pages"] > mid.pages or retried["stale"]), retried
        assert "v1" in sc.watch.stopped(), "the old version's worker was not stopped"
        assert await sc.flag_states() == [("v2", False), ("v1", True)]
        assert audit.workflows >= COUNT and audit.completed >= cancelled
