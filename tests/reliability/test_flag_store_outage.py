"""The flag store is unavailable for 30 s in the middle of a rollout:

- ``sqlite_lock``: the embedded store's file is locked by another program (an exclusive transaction held for
  30 s; in WAL mode readers still read, every write waits for the busy timeout and fails);
- ``unleash_stopped``: the real Unleash process is stopped for 30 s (a private instance: nobody else's tests see
  it go), so every Admin API call fails to connect. ``make chaos`` runs it; ``make test`` leaves it out to keep the
  suite under 6 minutes.

Either way no rollout step may be skipped (the rollout's own history lists every percentage, in order), the
rollout must resume once the store is back, and ``status`` must say why it waits while it waits."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr
from tests.reliability.harness import (
    CHAOS,
    COUNT,
    FAST_STEPS,
    PYTHON,
    SECRETS,
    PrivateUnleash,
    Report,
    measurement,
    options,
    scenario,
)
from tests.unleash_fixtures import HumanAdmin, UnleashServer

from diachronic.ci.contracts import Phase
from diachronic.flags import FlagStore
from diachronic.flags.unleash import UnleashFlagStore

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(360 + COUNT)]
OUTAGE_S = 30.0
LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


@asynccontextmanager
async def sqlite_locked(path: Path) -> AsyncIterator[None]:
    """Another program holds an exclusive transaction on the file until the block ends."""
    locker = subprocess.Popen(
        [PYTHON, "-c", LOCKER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert locker.stdout is not None and locker.stdin is not None
    line = await asyncio.to_thread(locker.stdout.readline)
    assert line.strip() == "locked", line
    try:
        yield
    finally:
        locker.stdin.close()
        await asyncio.to_thread(locker.wait, 30)


ONLY_IN_CHAOS = pytest.mark.skipif(
    not CHAOS, reason="make chaos runs it (set DIACHRONIC_CHAOS_WORKFLOWS); make test runs the SQLite variant"
)


@pytest.mark.parametrize("store", ["sqlite_lock", pytest.param("unleash_stopped", marks=ONLY_IN_CHAOS)])
async def test_flag_store_unavailable_for_30_s_mid_rollout(
    store: str, tmp_path: Path, reliability_report: Report, request: pytest.FixtureRequest
) -> None:
    unleash: PrivateUnleash | None = None
    flags: FlagStore | None = None
    env: dict[str, str] = {}
    if store == "unleash_stopped":
        unleash = request.getfixturevalue("private_unleash")
        server = UnleashServer(unleash.url, SecretStr(SECRETS.admin_token), SecretStr(SECRETS.client_token))
        human = HumanAdmin(server)
        await human.delete_workflows(["subscription"])  # a clean slate: the sample's workflow name is fixed
        await human.close()
        flags = UnleashFlagStore(unleash.url, SECRETS.admin_token, SECRETS.client_token, refresh_s=0.5)
        env = unleash.settings_env()
    try:
        async with scenario(f"flag_store_{store}", tmp_path, flags=flags, env=env) as sc:
            await sc.start_workers({"v1": "v1", "v2": "v2"})
            await sc.deploy("v1")
            await sc.ci_result(120)
            if isinstance(sc.flags, UnleashFlagStore):
                await sc.flags.wait_for_routing("subscription")
            await sc.start_subscriptions(COUNT)
            sc.background(sc.trickle())

            await sc.deploy("v2", options(FAST_STEPS, batch=max(COUNT // 10, 3)))
            before = await sc.until(
                lambda s: s.phase is Phase.ROLLING_OUT and 25 <= (s.rollout_percent or 0) < 75,
                timeout=120,
                what="the rollout to be under way",
            )
            if unleash is None:
                async with sqlite_locked(sc.data / "flags.sqlite3"):
                    fault_start = sc.mark("fault_start")
                    await asyncio.sleep(OUTAGE_S)  # the outage itself, not a wait for a condition
                fault_end = sc.mark("fault_end")
            else:
                fault_start = sc.mark("fault_start")
                await asyncio.to_thread(unleash.stop_node)
                await asyncio.sleep(OUTAGE_S)  # the outage itself, not a wait for a condition
                await asyncio.to_thread(unleash.start)
                fault_end = sc.mark("fault_end")

            during = sc.timeline.between(fault_start + 1, fault_end)
            percents_during = {s.status.rollout_percent for s in during if s.status is not None}
            reasons = [s.status.last_error for s in during if s.status is not None and s.status.last_error]
            shown_s = None
            if reasons:
                first = next(s for s in during if s.status is not None and s.status.last_error)
                shown_s = first.t - fault_start
            held = max((p or 0 for p in percents_during), default=before.rollout_percent or 0)
            after = await sc.until(
                lambda s: (s.rollout_percent or 0) > held,
                timeout=120,
                what="the rollout to take its next step",
            )
            resumed = next(
                (x.t for x in sc.timeline.ok() if x.t > fault_end and (x.status.rollout_percent or 0) > held), None
            )
            result = await sc.ci_result(240)
            sc.mark("completed")
            audit = await sc.audit("v2")
            percents = await sc.rollout_percents()
            live_stopped = sc.live_workers_stopped(audit, ["v2"])
            leaks = await sc.scan()
            [record] = result["deployments"]
            what = "an exclusive SQLite transaction held by another process" if unleash is None else "Unleash stopped"
            reliability_report.add(
                measurement(
                    sc,
                    fault=f"flag store unavailable for {OUTAGE_S:.0f} s mid-rollout ({what})",
                    what_happened=(
                        f"at {before.rollout_percent}% the store became unavailable; the rollout held at "
                        f"{sorted(p for p in percents_during if p is not None)}% "
                        + (
                            f"and status said why {shown_s:.0f} s into the outage ({reasons[0][:160]!r})"
                            if reasons
                            else "and status said nothing about it"
                        )
                        + f"; after the outage it went on to {after.rollout_percent}%; rollout steps {percents}"
                    ),
                    audit=audit,
                    live_stopped=live_stopped,
                    leaks=leaks,
                    fault_s=fault_end - fault_start,
                    recover_s=None if resumed is None else resumed - fault_end,
                    recovered_when="status shows progress again (the next rollout step)",
                    complete_s=sc.marks["completed"] - fault_end,
                    outcome=record["phase"],
                    reason_shown_after_s=None if shown_s is None else round(shown_s, 1),
                    reason_shown=reasons[0][:300] if reasons else None,
                )
            )
            assert record["phase"] == "completed", record
            assert audit.lost == [], audit.lost
            assert audit.double_signalled == [], audit.double_signalled
            assert live_stopped == [], live_stopped
            assert leaks == [], leaks
            assert percents == [0, 10, 25, 50, 75, 100], "a rollout step was skipped or repeated"
            assert reasons, "status never said why the rollout waited"
            flags_now = await sc.flags.list_version_flags("subscription", include_archived=True)
            assert [(f.info.version_id, f.archived) for f in flags_now] == [("v2", False), ("v1", True)]
    finally:
        if flags is not None:
            await flags.close()
