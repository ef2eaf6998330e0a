"""The Temporal dev server is stopped mid-rollout (SIGTERM, and separately SIGKILL), then restarted on the same
database file and port. Nothing diachronic runs is restarted: the CI worker process, the sample workers and the
test's own client reconnect by themselves (checked: each process, by pid, polls its task queue again), and the
deployment carries on from what the database file holds.

The schedule's last step waits an hour, so the rollout holds at 75 % with its timer pending whatever the machine's
speed: the fault always hits a rollout under way. Once every process polls again, a human promotes it."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest
from examples.subscription import task_queue
from tests.conditions import eventually
from tests.reliability.harness import (
    COUNT,
    RESTARTING,
    Report,
    fault_test,
    measurement,
    options,
    polled_since,
    scenario,
)

from diachronic.ci.contracts import Phase
from diachronic.errors import BackendError
from diachronic.settings import CI_TASK_QUEUE

BUDGET_S = 240.0 + COUNT
pytestmark = fault_test(BUDGET_S)
DOWN_S = 3.0
HOLDING_STEPS = "10@1s,25@1s,50@1s,75@1s,100@1h"  # holds at 75 % until promoted


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_temporal_stopped_mid_rollout_then_restarted_on_the_same_file(
    sig: signal.Signals, tmp_path: Path, reliability_report: Report
) -> None:
    name = sig.name.lower()
    async with scenario(f"temporal_{name}", tmp_path, budget_s=BUDGET_S) as sc:
        await sc.go_live("v1", {"v1": "v1", "v2": "v2"})
        cancelled = await sc.cancel_some()

        await sc.deploy("v2", options(HOLDING_STEPS, batch=max(COUNT // 10, 3)))
        before = await sc.until(
            lambda s: s.phase is Phase.ROLLING_OUT and s.rollout_percent == 75,
            timeout=120,
            what="the rollout to hold at 75 %",
        )
        workers_before = {v: life.uid for v, life in sc.watch.running().items()}
        ci_pid = sc.ci_worker.pid
        db_size = sc.server.db.stat().st_size
        sc.mark("fault_start")
        stop_s = await sc.server.stop(sig)
        await asyncio.sleep(DOWN_S)  # the outage itself, not a wait for a condition
        await sc.server.restart()
        fault_end = sc.mark("fault_end")
        restarted_at = datetime.now(UTC)

        # Every process reconnects by itself: the same pids poll their task queues on the new server.
        worker_pids = {life.version: int((life.uid or "0@").split("@")[0]) for life in sc.watch.running().values()}
        checks = [(CI_TASK_QUEUE, ci_pid)] + [(task_queue(v), pid) for v, pid in worker_pids.items()]
        for queue, pid in checks:
            await eventually(
                lambda q=queue, p=pid: polled_since(sc.client, q, p, restarted_at),  # type: ignore[misc]
                timeout=60,
                what=f"pid {pid} to poll {queue} again",
                not_yet=RESTARTING,
            )
        reconnect_s = sc.mark("reconnected") - fault_end
        # Right after a restart Temporal may drop an update before the workflow sees it: the CLI says "send it
        # again" (a retryable BackendError), and a human does.
        await eventually(
            lambda: sc.control("promote", "reliability: Temporal is back"),
            what="the promote to be taken",
            not_yet=(BackendError,),
        )

        result = await sc.ci_result(240)
        verdict = await sc.verdict(result, "v2")
        percents = await sc.rollout_percents()
        progress = sc.timeline.first_change_after(fault_end)
        reliability_report.add(
            measurement(
                sc,
                verdict,
                fault=f"Temporal dev server {sig.name} mid-rollout, restarted on the same database file",
                what_happened=(
                    f"{sig.name} at {before.rollout_percent}% (server gone after {stop_s:.1f} s, down {DOWN_S:.0f} s, "
                    f"database {db_size // 1024} KiB); restarted on the same file and port; the CI worker and both "
                    f"sample workers (same pids, no restart) polled again {reconnect_s:.1f} s after the restart, "
                    f"then the rollout was promoted; rollout steps {percents}; {verdict.audit.migrated_runs} runs "
                    f"migrated, v1 retired"
                ),
                fault_s=fault_end - sc.marks["fault_start"],
                recover_s=None if progress is None else progress - fault_end,
                recovered_when="status shows progress again (migration count, or the promoted step)",
                complete_s=sc.marks["completed"] - fault_end,
                reconnect_s=round(reconnect_s, 1),
                processes_restarted=0,
                cancelled=cancelled,
            )
        )
        assert verdict.record["phase"] == "completed", verdict.record
        verdict.assert_nothing_lost()
        assert percents == [0, 10, 25, 50, 75, 100]
        assert sc.ci_worker.pid == ci_pid and sc.ci_worker.alive(), "the CI worker had to be restarted"
        assert {v: u for v, u in workers_before.items() if v == "v2"} == {
            v: life.uid for v, life in sc.watch.running().items()
        }, "the v2 worker had to be restarted"
        assert "v1" in sc.watch.stopped()
        assert await sc.flag_states() == [("v2", False), ("v1", True)]
