"""A freeze set while a deployment is under way holds its rollout at the current step (status says why and until
when) until it lifts; a forced deployment goes through and records the freeze it overrode. Real CI workflows on the
dev server; the dark deploy keeps the rollout from starting until the freeze is in force."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.ci_helpers import CIHarness, deploy_initial, event, fast, finish_ci, run_diachronic, serving
from tests.conditions import eventually

from diachronic.ci import client as ci
from diachronic.ci.contracts import CIStatus, Phase
from diachronic.ci.freeze import lift_freeze, set_freeze
from diachronic.ci.planner.schedule import parse_steps
from diachronic.flags.evaluation import general_percent

pytestmark = pytest.mark.devserver

QUICK = parse_steps("50@0.1s,100@0.1s")


async def dark_deploy_then_freeze(h: CIHarness, wf: str, reason: str, **options: object) -> None:
    """v2 waits for ``continue`` (no rollout yet) when the freeze begins; then it is continued."""
    await ci.deploy(h.client, h.task_queue, event(wf, "v2", isDarkDeploy=True), fast(steps=QUICK, **options))

    async def awaiting_continue() -> bool:
        return (await ci.status(h.client, wf)).phase is Phase.AWAITING_CONTINUE

    await eventually(awaiting_continue, what="the dark deploy waiting for continue")
    await set_freeze(h.client, h.task_queue, wf, datetime.now(UTC) + timedelta(hours=1), reason)
    await ci.control(h.client, wf, "continue")


async def test_a_freeze_holds_the_running_rollout_at_its_step_until_it_is_lifted(
    h: CIHarness, wf: str, data_dir: Path
) -> None:
    await deploy_initial(h, wf, "v1")
    async with serving(h.client, wf, "v1", "v2"):
        await dark_deploy_then_freeze(h, wf, "incident 44")

        async def held() -> CIStatus | None:
            status = await ci.status(h.client, wf)
            return status if status.rollout_frozen is not None else None

        status = await eventually(held, what="the rollout held by the freeze")
        assert status.rollout_frozen is not None and status.rollout_frozen.reason == "incident 44"
        assert (status.phase, status.rollout_percent) == (Phase.ROLLING_OUT, 0)
        [v2, _] = await h.flags.list_version_flags(wf)
        assert general_percent(v2) == 0  # the first step was due, and not written
        code, out, err = await run_diachronic(h.client, h.task_queue, "status", wf, DIACHRONIC_DATA_DIR=str(data_dir))
        assert code == 0 and "the rollout holds its current step" in out + err, (out, err)
        await lift_freeze(h.client, wf)
        [record] = (await finish_ci(h, wf))["deployments"]
    assert (record["phase"], record["rollout"]["percent"], record["overrodeFreeze"]) == ("completed", 100, None)


async def test_a_forced_deployment_rolls_out_through_a_freeze_and_records_it(h: CIHarness, wf: str) -> None:
    await deploy_initial(h, wf, "v1")
    async with serving(h.client, wf, "v1", "v2"):
        await dark_deploy_then_freeze(h, wf, "incident 45", forceReason="hotfix for incident 45")
        [record] = (await finish_ci(h, wf))["deployments"]
    await lift_freeze(h.client, wf)
    assert record["phase"] == "completed"
    assert record["overrodeFreeze"]["reason"] == "incident 45"
