"""The flag store is unavailable while a rollout runs:

- ``sqlite_lock``: the embedded store's file is locked by another program (an exclusive transaction; in WAL mode
  readers still read, every write waits for the busy timeout and fails);
- ``unleash_stopped``: the real Unleash process is stopped (a private instance: nobody else's tests see it go), so
  every Admin API call fails to connect.

The new version is deployed dark and the outage begins before the test continues it, so the rollout meets the
outage at its first step whatever the machine's speed. Under ``make chaos`` the outage lasts 30 s; under
``make test`` it lasts until ``status`` has said why the rollout waits. Either way no rollout step may be skipped
(the rollout's own history lists every percentage, in order), the rollout must finish once the store is back, and
``status`` must say why it waits while it waits."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
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
    Scenario,
    fault_test,
    measurement,
    options,
    scenario,
)
from tests.unleash_fixtures import HumanAdmin, UnleashServer

from diachronic.ci.contracts import Phase
from diachronic.flags import FlagStore
from diachronic.flags.unleash import UnleashFlagStore

BUDGET_S = 300.0 + COUNT
pytestmark = fault_test(BUDGET_S)
OUTAGE_S = 30.0 if CHAOS else 0.0  # under make test: as long as it takes status to say why the rollout waits
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
    try:
        line = await asyncio.to_thread(locker.stdout.readline)
        assert line.strip() == "locked", line
        yield
    finally:
        locker.stdin.close()
        await asyncio.to_thread(locker.wait, 30)


@asynccontextmanager
async def unleash_stopped(unleash: PrivateUnleash) -> AsyncIterator[None]:
    """The Unleash process is stopped (PostgreSQL keeps running) until the block ends."""
    await asyncio.to_thread(unleash.stop_node)
    try:
        yield
    finally:
        await asyncio.to_thread(unleash.start)


@asynccontextmanager
async def outage(sc: Scenario, unleash: PrivateUnleash | None) -> AsyncIterator[None]:
    async with sqlite_locked(sc.data / "flags.sqlite3") if unleash is None else unleash_stopped(unleash):
        yield


@pytest.mark.parametrize("store", ["sqlite_lock", "unleash_stopped"])
async def test_flag_store_unavailable_mid_rollout(
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
        async with scenario(f"flag_store_{store}", tmp_path, budget_s=BUDGET_S, flags=flags, env=env) as sc:
            await sc.go_live("v1", {"v1": "v1", "v2": "v2"})
            await sc.deploy("v2", options(FAST_STEPS, batch=max(COUNT // 10, 3)), dark=True)
            await sc.until(lambda s: s.phase is Phase.AWAITING_CONTINUE, timeout=120, what="v2 to wait for continue")
            async with outage(sc, unleash):
                fault_start = sc.mark("fault_start")
                await sc.control("continue", "reliability: the rollout starts during the outage")
                waiting = await sc.until(
                    lambda s: s.phase is Phase.ROLLING_OUT and bool(s.last_error),
                    timeout=120,
                    what="status to say why the rollout waits",
                )
                await asyncio.sleep(max(fault_start + OUTAGE_S - sc.now(), 0))  # the outage itself, under make chaos
                ending_at = datetime.now(UTC)  # the store is back only after this
            fault_end = sc.mark("fault_end")

            during = [s.status for s in sc.timeline.between(fault_start, fault_end) if s.status is not None]
            percents_during = sorted({s.rollout_percent for s in during if s.rollout_percent is not None})
            reason = waiting.last_error or ""
            shown_s = next(x.t for x in sc.timeline.ok() if x.t >= fault_start and x.status.last_error) - fault_start
            after = await sc.until(
                lambda s: (s.rollout_percent or 0) > 0, timeout=120, what="the rollout to take its first step"
            )
            resumed = next(x.t for x in sc.timeline.ok() if x.t > fault_end and (x.status.rollout_percent or 0) > 0)
            result = await sc.ci_result(240)
            verdict = await sc.verdict(result, "v2")
            steps = await sc.rollout_history()
            percents = [percent for _, percent in steps]
            what = "an exclusive SQLite transaction held by another process" if unleash is None else "Unleash stopped"
            reliability_report.add(
                measurement(
                    sc,
                    verdict,
                    fault=f"flag store unavailable for {fault_end - fault_start:.0f} s mid-rollout ({what})",
                    what_happened=(
                        f"the rollout was continued during the outage; it held at {percents_during}% and status "
                        f"said why {shown_s:.0f} s into the outage ({reason[:160]!r}); after the outage it went on "
                        f"to {after.rollout_percent}%; rollout steps {percents}"
                    ),
                    fault_s=fault_end - fault_start,
                    recover_s=resumed - fault_end,
                    recovered_when="status shows progress again (the first rollout step)",
                    complete_s=sc.marks["completed"] - fault_end,
                    reason_shown_after_s=round(shown_s, 1),
                    reason_shown=reason[:300],
                )
            )
            assert verdict.record["phase"] == "completed", verdict.record
            verdict.assert_nothing_lost()
            assert percents == [0, 10, 25, 50, 75, 100], "a rollout step was skipped or repeated"
            assert set(percents_during) <= {0} and steps[1][0] > ending_at, "a step was written during the outage"
            assert await sc.flag_states() == [("v2", False), ("v1", True)]
    finally:
        if flags is not None:
            await flags.close()
