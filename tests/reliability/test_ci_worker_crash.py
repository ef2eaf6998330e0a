"""The CI worker (``diachronic worker``, its own process) is SIGKILLed in the middle of a migration, then restarted.

Temporal holds the deployment's state (the CI, rollout and migration workflows' histories); the new process replays
them and carries on. The interrupted activity is retried once its timeout expires; a migrate signal resent by that
retry carries the same request id, so Temporal drops it: no workflow receives the signal twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from examples.subscription import task_queue
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
from tests.reliability.harness import audit as audit_runs

from diachronic.ci.contracts import Phase, migration_workflow_id

BUDGET_S = 300.0 + COUNT
pytestmark = fault_test(BUDGET_S)
DOWN_S = 2.0
FREEZE_AFTER_S = (0.02, 0.04, 0.01, 0.06, 0.03, 0.08)  # how long after a batch starts to look at it
# The retried batch is the proof that matters: a signal sent twice (same request id) reaches the workflow once.


async def batch_in_flight(sc: Scenario) -> bool:
    description = await sc.client.get_workflow_handle(migration_workflow_id("subscription")).describe()
    return any(
        p.activity_type.name == "migrate_batch" and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        for p in description.raw_description.pending_activities
    )


async def batch_results(sc: Scenario, *, retried_only: bool) -> list[dict[str, Any]]:
    """Results of the completed migrate_batch activities, from the migration workflow's own history; with
    ``retried_only``, of those that completed on a later attempt (their Started event says attempt > 1)."""
    results = []
    async for execution in sc.client.list_workflows(f'WorkflowId="{migration_workflow_id("subscription")}"'):
        history = await sc.client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        started = {
            e.event_id: e.activity_task_started_event_attributes.attempt
            for e in history.events
            if e.HasField("activity_task_started_event_attributes")
        }
        for e in history.events:
            if e.HasField("activity_task_completed_event_attributes"):
                completed = e.activity_task_completed_event_attributes
                if completed.result.payloads and (not retried_only or started.get(completed.started_event_id, 1) > 1):
                    result = json.loads(completed.result.payloads[0].data)
                    if "signalled" in result:
                        results.append(result)
    return results


async def retried_batches(sc: Scenario) -> list[dict[str, Any]]:
    return await batch_results(sc, retried_only=True)


async def unrecorded_signals(sc: Scenario) -> set[str]:
    """v1 runs that hold a migrate signal no completed batch reports: an attempt in flight delivered them."""
    recorded = {run_id for result in await batch_results(sc, retried_only=False) for run_id in result["signalled"]}
    checked = await audit_runs(sc.client, sc.started, task_queue("v2"))
    delivered = {
        run.run_id
        for chain in checked.chains.values()
        for run in chain
        if run.migrate_signals and run.task_queue == task_queue("v1")
    }
    return delivered - recorded


async def test_ci_worker_sigkill_mid_migration_then_restart(tmp_path: Path, reliability_report: Report) -> None:
    async with scenario("ci_worker_sigkill", tmp_path, budget_s=BUDGET_S) as sc:
        await sc.go_live("v1", {"v1": "v1", "v2": "v2"})
        cancelled = await sc.cancel_some()

        sc.mark("deploy")
        await sc.deploy("v2", options(FAST_STEPS, batch=max(COUNT // 10, 3)))
        await sc.until(
            lambda s: s.phase is Phase.ROLLING_OUT and (s.rollout_percent or 0) >= 10,
            timeout=120,
            what="the rollout to route some workflows to v2",
        )
        # The worst moment: a migrate_batch attempt has delivered signals that no completed batch reports yet. The
        # old version's worker is frozen (SIGSTOP) so that those workflows are still on the old queue when the
        # attempt is retried, and the CI worker is frozen while a batch is in flight until that moment is proven
        # from Temporal's histories; then it is killed.
        v1 = await sc.workers.find("subscription", "v1")
        assert v1 and v1[0].pid is not None
        os.killpg(v1[0].pid, signal.SIGSTOP)
        try:
            unrecorded: set[str] = set()
            for attempt in range(60):
                await eventually(
                    lambda: batch_in_flight(sc),
                    timeout=60,
                    what="a migrate batch in flight",
                    interval=0.01,
                    not_yet=RESTARTING,
                )
                await asyncio.sleep(FREEZE_AFTER_S[attempt % len(FREEZE_AFTER_S)])
                os.killpg(sc.ci_worker.pid, signal.SIGSTOP)
                unrecorded = await unrecorded_signals(sc)
                if unrecorded:
                    break
                os.killpg(sc.ci_worker.pid, signal.SIGCONT)
            assert unrecorded, "never caught a migrate batch with delivered, unrecorded signals"
            before = sc.timeline.latest()
            killed_pid = sc.ci_worker.pid
            await sc.ci_worker.kill()
            sc.mark("fault_start")
            await asyncio.sleep(DOWN_S)  # the outage itself, not a wait for a condition
            since = datetime.now(UTC) - timedelta(seconds=0.5)
            sc.ci_worker.start()
            await sc.ci_worker.wait_polling(sc.client, since)
            fault_end = sc.mark("fault_end")

            async def all_sent_again() -> bool:
                reported = {r for result in await batch_results(sc, retried_only=False) for r in result["signalled"]}
                return unrecorded <= reported

            # v1 stays frozen until a batch has reported each of them: they are still on the old queue, so the
            # migration must send their signals again (it cannot know the lost attempt had).
            await eventually(
                all_sent_again, timeout=120, what="the migration to signal those workflows again", not_yet=RESTARTING
            )
            sc.mark("sent_again")
        finally:
            os.killpg(v1[0].pid, signal.SIGCONT)

        result = await sc.ci_result(240)
        verdict = await sc.verdict(result, "v2")
        audit, record = verdict.audit, verdict.record
        percents = await sc.rollout_percents()
        progress = sc.timeline.first_change_after(fault_end)
        # Each of them was sent again after the restart (a batch reports it now) and still holds one signal.
        reported = {run_id for result in await batch_results(sc, retried_only=False) for run_id in result["signalled"]}
        resent = unrecorded & reported
        assert before is not None and before.migration is not None
        reliability_report.add(
            measurement(
                sc,
                verdict,
                fault="CI worker SIGKILLed mid-migration, restarted",
                what_happened=(
                    f"killed pid {killed_pid} while a migrate batch had delivered {len(unrecorded)} signals it had "
                    f"not reported yet (v1's worker frozen), at {before.rollout_percent}%; restarted {DOWN_S:.0f} s "
                    f"later; the new process replayed the CI, rollout and migration histories; the lost activities "
                    f"were retried after their timeouts, sending {len(resent)} of those signals again (Temporal "
                    f"dropped them: same request id); rollout steps {percents}; {audit.migrated_runs} runs migrated "
                    f"(diachronic's own counter: {record['migration']['signalled']}), v1 retired"
                ),
                fault_s=fault_end - sc.marks["fault_start"],
                recover_s=sc.marks["sent_again"] - fault_end,
                recovered_when=(
                    "the migration resumed: the lost batch retried after its 30 s heartbeat timeout; the rollout "
                    f"moved again after {progress - fault_end:.1f} s"
                    if progress is not None
                    else "the migration resumed: the lost batch retried after its 30 s heartbeat timeout"
                ),
                complete_s=sc.marks["completed"] - fault_end,
                cancelled=cancelled,
                resent_signals_dropped=len(resent),
            )
        )
        assert record["phase"] == "completed", record
        verdict.assert_nothing_lost()
        assert percents == [0, 10, 25, 50, 75, 100]
        assert resent == unrecorded, (unrecorded, resent)
        assert await retried_batches(sc), "the lost migrate_batch attempt was never retried"
        assert "v1" in sc.watch.stopped(), "the old version's worker was not stopped"
        assert await sc.flag_states() == [("v2", False), ("v1", True)]
        assert audit.workflows >= COUNT and audit.completed >= cancelled
