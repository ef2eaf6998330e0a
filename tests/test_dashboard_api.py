"""The dashboard's JSON API over real HTTP (uvicorn on loopback), on the real Temporal dev server and a CI worker:
the same data as ``diachronic status --json`` plus the versions, controls with the token and the CI's refusals,
the page and its files served from the package."""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.ci_helpers import CIHarness, deploy_served, event, fast, run_diachronic
from tests.conditions import eventually
from tests.http_helpers import SECRET, TOKEN, bearer, served, settings

from diachronic.ci import client as ci
from diachronic.ci.contracts import CIInput, CIStatus
from diachronic.ci.planner.freeze import FreezeWindow
from diachronic.ci.planner.schedule import parse_steps
from diachronic.ci.workflow import CIWorkflow
from diachronic.contracts import ci_workflow_id
from diachronic.http.dashboard import STATIC_DIR

pytestmark = [pytest.mark.devserver, pytest.mark.usefixtures("wf_served")]
ROOT = Path(__file__).resolve().parent.parent


async def detail(http: httpx.AsyncClient, wf: str) -> dict[str, Any]:
    response = await http.get(f"/api/workflows/{wf}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def control(http: httpx.AsyncClient, wf: str, name: str, **kw: Any) -> httpx.Response:
    if "content" not in kw and "json" not in kw:
        kw["json"] = {}
    return await http.post(f"/api/workflows/{wf}/controls/{name}", **kw)


async def cli_status_json(h: CIHarness, wf: str) -> dict[str, Any]:
    """``diachronic status <wf> --json`` as a user runs it (asynchronously: the CI worker runs in this loop)."""
    code, out, err = await run_diachronic(h.client, h.task_queue, "status", wf, "--json")
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


STATUS_KEYS = {field.alias or name for name, field in CIStatus.model_fields.items()}


async def test_a_workflow_reads_as_status_json_plus_its_versions(
    h: CIHarness, http: httpx.AsyncClient, wf: str
) -> None:
    await deploy_served(h, wf)
    body = await detail(http, wf)
    assert {k: body[k] for k in STATUS_KEYS} == await cli_status_json(h, wf)
    assert body["phase"] == "completed" and body["toVersion"]["versionId"] == "v1"
    [version] = body["versions"]
    assert version == {
        "seqId": 0,
        "versionId": "v1",
        "taskQueue": f"{wf}-v1",
        "flagName": f"workflow.{wf}.seqId.000.version.v1",
        "enabled": True,
        "archived": False,
        "generalPercent": 100,
        "darkDeploy": True,
        "sharePercent": 100.0,
        "testSharePercent": 100.0,
    }
    assert body["routing"] == {"method": "exact", "unroutedPercent": 0.0, "unroutedTestPercent": 0.0}
    listing = (await http.get("/api/workflows")).json()
    assert listing["controlsNeedToken"] is True
    [mine] = [w for w in listing["workflows"] if w["workflowName"] == wf]
    assert {k: mine[k] for k in STATUS_KEYS} == {k: body[k] for k in STATUS_KEYS}


async def test_mid_rollout_the_versions_show_their_shares_and_promote_finishes_it(
    h: CIHarness, http: httpx.AsyncClient, wf: str
) -> None:
    await deploy_served(h, wf)
    await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps("30@0.3s,100@600s")))

    async def at_30() -> dict[str, Any] | None:
        body = await detail(http, wf)
        return body if body["rolloutPercent"] == 30 else None

    body = await eventually(at_30, what="the rollout at 30 %")
    assert body["phase"] == "rolling_out" and body["nextStepAt"] is not None
    assert (body["fromVersion"]["versionId"], body["toVersion"]["versionId"]) == ("v1", "v2")
    assert [p for _, p in body["rolloutHistory"]] == [0, 30]
    shares = {v["versionId"]: (v["sharePercent"], v["testSharePercent"], v["archived"]) for v in body["versions"]}
    assert shares == {"v2": (30.0, 100.0, False), "v1": (70.0, 0.0, False)}

    response = await control(http, wf, "promote", headers=bearer(), json={"reason": "looks good"})
    assert response.status_code == 200, response.text
    assert response.json()["control"] == "promote" and response.json()["workflowName"] == wf

    async def retired() -> dict[str, Any] | None:
        body = await detail(http, wf)
        return body if body["phase"] == "completed" and body["versions"][-1]["archived"] else None

    body = await eventually(retired, what="v1 retired")
    shares = {v["versionId"]: (v["sharePercent"], v["archived"]) for v in body["versions"]}
    assert shares == {"v2": (100.0, False), "v1": (0.0, True)}


async def test_controls_need_the_token_and_a_refusal_says_why(
    h: CIHarness, http: httpx.AsyncClient, wf: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await deploy_served(h, wf)
    await ci.deploy(h.client, h.task_queue, event(wf, "v2", isDarkDeploy=True), fast(steps=parse_steps("100@0.3s")))

    async def awaiting() -> bool:
        return (await detail(http, wf))["phase"] == "awaiting_continue"

    await eventually(awaiting, what="the dark deploy waiting for continue")
    responses: list[httpx.Response] = []

    async def send(name: str, **kw: Any) -> httpx.Response:
        responses.append(response := await control(http, wf, name, **kw))
        return response

    for headers in ({}, bearer("not-the-token"), {"Authorization": TOKEN}):
        response = await send("continue", headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["error"] == "Unauthorized"
    refused = await send("promote", headers=bearer())
    assert refused.status_code == 422
    assert refused.json() == {
        "error": "UpdateRejected",
        "message": "promote: the deployment of v2 is awaiting_continue, not rolling_out",
    }
    assert (await send("explode", headers=bearer())).status_code == 400
    json_type = {"Content-Type": "application/json"}
    assert (await send("continue", headers=bearer() | json_type, content=b"{not json")).status_code == 400
    for cross_site in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}):
        refused = await send("continue", headers=bearer() | cross_site, content=b"{}")
        assert refused.status_code == 400 and refused.json()["problems"][0]["field"] == "content-type"
    assert (await send("continue", headers=bearer(), json={"reasn": "typo"})).status_code == 400
    assert (await send("continue", headers=bearer(), json={"reason": "x" * 501})).status_code == 400
    assert (await detail(http, wf))["phase"] == "awaiting_continue", "nothing refused changed anything"

    accepted = await send("continue", headers=bearer(), json={"reason": "dashboard test"})
    assert accepted.status_code == 200 and accepted.json()["message"] == "continuing: the rollout starts"
    result = await h.client.get_workflow_handle(ci_workflow_id(wf)).result()
    assert result["deployments"][0]["phase"] == "completed"
    gone = await send("cancel", headers=bearer())
    assert gone.status_code == 404 and "nothing is running" in gone.json()["message"]

    for response in responses:
        assert TOKEN not in response.text and all(TOKEN not in v for v in response.headers.values())
    assert not any(TOKEN in record.getMessage() for record in caplog.records), "the token reached a log line"


async def test_names_are_checked_and_unknown_workflows_are_404(http: httpx.AsyncClient, wf: str) -> None:
    for bad in ("bad.name", "-leading", "x" * 101):
        response = await http.get(f"/api/workflows/{bad}")
        assert response.status_code == 400 and response.json()["error"] == "InvalidInstruction", bad
    response = await http.get(f"/api/workflows/{wf}")
    assert response.status_code == 404 and wf in response.json()["message"]
    assert (await control(http, wf, "continue", headers=bearer())).status_code == 404


async def test_a_ci_without_a_worker_does_not_slow_the_list(h: CIHarness, http: httpx.AsyncClient, wf: str) -> None:
    await deploy_served(h, wf)
    stuck = wf + "stuck"
    await h.client.start_workflow(CIWorkflow.run, CIInput(), id=ci_workflow_id(stuck), task_queue=f"dead-{wf}")

    async def listed() -> dict[str, Any] | None:
        body: dict[str, Any] = (await http.get("/api/workflows")).json()
        return body if stuck in {u["workflowName"] for u in body["unavailable"]} else None

    await eventually(listed, what="the stuck CI listed as unavailable")
    for _ in range(3):
        body = (await http.get("/api/workflows")).json()
        assert wf in {w["workflowName"] for w in body["workflows"]}
        # Pending: its read is still in flight (Temporal gives up on it only after ~30 s), so the list did not wait.
        assert [u["error"] for u in body["unavailable"] if u["workflowName"] == stuck] == ["Pending"]
    await h.client.get_workflow_handle(ci_workflow_id(stuck)).terminate()


async def test_the_page_and_its_files_come_from_the_package(http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "default-src 'none'" in csp
    for src in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert src.startswith("/static/") or src.startswith("#"), src
        if src.startswith("/static/"):
            assert (await http.get(src)).status_code == 200, src
    kinds = {"dashboard.js": "javascript", "dashboard.css": "text/css", "favicon.svg": "image/svg+xml"}
    for name, kind in kinds.items():
        response = await http.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"], name
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert re.findall(r"https?://(?!www\.w3\.org/2000/svg)", text) == [], f"{path.name} reaches outside"
    document = (await http.get("/openapi.json")).json()
    assert {"/api/workflows", "/api/workflows/{name}", "/api/workflows/{name}/controls/{control}"} <= set(
        document["paths"]
    )
    assert document["paths"]["/api/workflows/{name}/controls/{control}"]["post"]["security"] == [{"bearerAuth": []}]
    assert "/" not in document["paths"]


def test_the_static_files_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["diachronic"]
    package = ROOT / "src" / "diachronic"
    files = [p.relative_to(package).as_posix() for p in STATIC_DIR.iterdir()]
    assert {"http/static/index.html", "http/static/dashboard.js", "http/static/dashboard.css"} <= set(files)
    for file in files:
        assert any(fnmatch.fnmatch(file, pattern) for pattern in patterns), f"{file} would not be in the wheel"


async def test_reads_stay_open_and_secrets_stay_out(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/workflows")
    assert response.status_code == 200
    assert SECRET not in response.text and TOKEN not in response.text


async def test_the_list_carries_the_freezes_in_force(h: CIHarness, data_dir: Path) -> None:
    window = FreezeWindow(cron="* * * * *", duration="1h", reason="always")
    config = settings(data_dir, ci_task_queue=h.task_queue, freeze_windows=[window])
    async with served(config, h.client, h.flags) as http:
        body = (await http.get("/api/workflows")).json()
        [freeze] = [f for f in body["freezes"] if f["source"] == "window"]  # windows need no read: always there
        assert (freeze["scope"], freeze["reason"]) == ("*", "always")

        async def stored_freezes_read() -> dict[str, Any] | None:
            answer: dict[str, Any] = (await http.get("/api/workflows")).json()
            return answer if answer["freezesError"] is None else None  # a slow read says so, then answers

        await eventually(stored_freezes_read, what="the freezes read from Temporal")
