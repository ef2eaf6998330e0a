"""Routing at a percentage the CI set, end to end on the real Unleash: the CI rolls a new version out to 30 % and
holds; ``POST /instruction`` (the HTTP app routing through its own ``UnleashClient``) must send every workflow id
where Unleash's own engine, fed the very ``/api/client/features`` payload the server serves, says it goes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from tests.ci_helpers import event, serving
from tests.conditions import eventually
from tests.http_helpers import bearer, served, settings
from tests.unleash_engine import Engine, routed_queue
from tests.unleash_fixtures import UnleashServer, ci_on_unleash, throwaway_workflow

from diachronic.ci import client as ci
from diachronic.ci.contracts import DeployOptions, Phase
from diachronic.ci.planner.schedule import parse_steps
from diachronic.contracts import ci_workflow_id
from diachronic.flags import VersionFlag

pytestmark = [pytest.mark.unleash, pytest.mark.devserver]
HELD_PERCENT = 30
IDS = 200


@pytest.fixture
async def unleash_wf(unleash: UnleashServer) -> AsyncIterator[str]:
    async with throwaway_workflow(unleash, "ulroute") as name:
        yield name


async def served_features(unleash: UnleashServer) -> dict[str, Any]:
    """What the server hands every client SDK: ``GET /api/client/features`` with the client token."""
    headers = {"Authorization": unleash.client_token.get_secret_value()}
    async with httpx.AsyncClient(base_url=unleash.url, headers=headers, timeout=10) as raw:
        response = await raw.get("/api/client/features")
        response.raise_for_status()
        payload: dict[str, Any] = response.json()
    return payload


async def test_the_signaler_routes_as_unleash_does_at_the_percentage_the_ci_set(
    dev_env: WorkflowEnvironment,
    data_dir: Path,
    unleash: UnleashServer,
    unleash_wf: str,
    offline_unleash: Callable[[Sequence[VersionFlag] | Mapping[str, Any]], Engine],
) -> None:
    wf, client = unleash_wf, dev_env.client
    ci_flags, app_flags = unleash.store(), unleash.store()  # the CI worker and the HTTP app: two clients
    try:
        async with ci_on_unleash(client, ci_flags, data_dir) as ci_queue, serving(client, wf, "v1", "v2"):
            await ci.deploy(client, ci_queue, event(wf, "v1"))
            await client.get_workflow_handle(ci_workflow_id(wf)).result()
            holding = DeployOptions(steps=parse_steps(f"{HELD_PERCENT}@0s,100@1h"), poll_interval_s=0.2)
            await ci.deploy(client, ci_queue, event(wf, "v2"), holding)

            async def held() -> bool:
                status = await ci.status(client, wf)
                return status.phase is Phase.ROLLING_OUT and status.rollout_percent == HELD_PERCENT

            await eventually(held, what=f"the rollout to hold at {HELD_PERCENT} %")
            await app_flags.wait_for_routing(wf)  # the app's client has fetched what the server holds now
            payload = await served_features(unleash)
            names = [f["name"] for f in payload["features"] if f["name"].startswith(f"workflow.{wf}.")]
            engine = offline_unleash(payload)

            app_settings = settings(data_dir, ci_task_queue=ci_queue, flags="unleash")
            async with served(app_settings, client, app_flags) as http:
                chosen: dict[bool, list[str]] = {False: [], True: []}
                for i in range(IDS):
                    for is_test in (False, True):
                        workflow_id = f"{wf}-{i}-{is_test}"
                        args = {"workflowId": workflow_id, "workflowType": wf, "taskQueue": "", "isTest": is_test}
                        response = await http.post(
                            "/instruction", json={"action": "start", "args": args}, headers=bearer()
                        )
                        assert response.status_code == 200, response.text
                        expected = routed_queue(engine, names, workflow_id, is_test=is_test)
                        assert response.json()["taskQueue"] == expected, (workflow_id, is_test)
                        chosen[is_test].append(response.json()["taskQueue"])
            await ci.control(client, wf, "cancel", "the test has what it needs")
    finally:
        await ci_flags.close()
        await app_flags.close()
    assert set(chosen[True]) == {f"{wf}-v2"}, "test traffic always reaches the newest version"
    on_v2 = chosen[False].count(f"{wf}-v2")
    assert 0 < on_v2 < IDS, f"{on_v2} of {IDS} ids on v2: not a split at {HELD_PERCENT} %"
