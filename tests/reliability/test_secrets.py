"""Secrets never appear (docs/architecture.md): the whole flow runs with recognisable secret values, and
everything it produced is searched for them.

The flow: a private Unleash whose admin and client tokens are recognisable; the HTTP app (``diachronic -v serve``)
with a recognisable GitHub webhook secret and signaler token; the CI worker (``diachronic -v worker``); the
sample's workers. v1 and v2 are deployed through signed GitHub ``deployment_status`` deliveries, subscriptions are
started through ``POST /instruction`` (and the in-process signaler), v2 is promoted and followed with the CLI.
Error paths are taken on purpose: a wrong webhook signature, a missing and a wrong bearer token, invalid bodies,
a wrong Unleash admin token (itself recognisable), an unreachable Unleash, an invalid deploy, an unknown workflow.

Searched: every HTTP response (status, headers, body), every CLI output, every file the run wrote (the logs of
every process, the SQLite files, Temporal's database), every ``status`` answer, this process's log records and
the CI workflows' Temporal histories."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from tests.command_line import DIACHRONIC, diachronic
from tests.conditions import eventually
from tests.reliability.harness import (
    COUNT,
    RESTARTING,
    ROOT,
    SECRETS,
    PrivateUnleash,
    Report,
    Scenario,
    fault_test,
    measurement,
    scan_text,
    scenario,
)
from tests.unleash_fixtures import HumanAdmin, UnleashServer

from diachronic.ci.contracts import Phase
from diachronic.devserver import free_port
from diachronic.flags.unleash import UnleashFlagStore
from diachronic.webhook.signature import sign

BUDGET_S = 300.0 + COUNT
pytestmark = fault_test(BUDGET_S)
V1_SHA = "1111111" + "a" * 33
V2_SHA = "2222222" + "b" * 33
WRONG_ADMIN = f"*:*.chaosSECRET-wrongadmin-{uuid.uuid4().hex[:16]}"
WRONG_BEARER = f"chaosSECRET-wrongbearer-{uuid.uuid4().hex[:16]}"


def delivery(sha: str, *, event: str = "deployment_status", state: str = "success") -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "deployment_status": {"state": state, "created_at": datetime.now(UTC).isoformat()},
            "deployment": {"sha": sha, "environment": "development", "payload": {"workflowName": "subscription"}},
            "repository": {"full_name": "acme/subscription"},
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(SECRETS.webhook, body),
    }
    return body, headers


class Exchanges:
    """Every HTTP exchange and CLI run of the test, kept verbatim for the scan."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.count = 0

    def keep(self, source: str, text: str) -> None:
        self.count += 1
        self.sc.extra_text.append((source, text))

    async def http(self, http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await http.request(method, path, **kwargs)
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.keep(
            f"HTTP {method} {path}", f"{response.status_code} {response.reason_phrase}\n{headers}\n{response.text}"
        )
        return response

    async def cli(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        ran = await diachronic(*args, env=env or self.sc.env, cwd=ROOT)
        text = ran.out + ran.err
        self.keep(f"diachronic {' '.join(args)}", text)
        return ran.code, text


async def test_no_secret_appears_anywhere(
    tmp_path: Path, reliability_report: Report, private_unleash: PrivateUnleash
) -> None:
    unleash = private_unleash
    human = HumanAdmin(UnleashServer(unleash.url, SecretStr(SECRETS.admin_token), SecretStr(SECRETS.client_token)))
    await human.delete_workflows(["subscription"])
    await human.close()
    flags = UnleashFlagStore(unleash.url, SECRETS.admin_token, SECRETS.client_token, refresh_s=0.5)
    secrets = {**SECRETS.values(), "wrong unleash admin token": WRONG_ADMIN, "wrong bearer token": WRONG_BEARER}
    port = free_port()
    env = {**unleash.settings_env(), "DIACHRONIC_HTTP_PORT": str(port)}
    try:
        async with scenario("secrets", tmp_path, budget_s=BUDGET_S, flags=flags, env=env, secrets=secrets) as sc:
            io = Exchanges(sc)
            serve_log = (tmp_path / "serve.log").open("ab")
            server = await asyncio.create_subprocess_exec(
                *DIACHRONIC, "-v", "serve", env=sc.env, cwd=ROOT, stdout=serve_log, stderr=serve_log
            )
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                    await eventually(
                        lambda: http.get("/healthz"), timeout=60, what="the HTTP app", interval=0.2, not_yet=RESTARTING
                    )  # any answer
                    outcome = await flow(sc, io, http, flags)
            finally:
                server.terminate()
                await server.wait()
                serve_log.close()

            result = await sc.ci_result(240)
            verdict = await sc.verdict(result, "2222222")
            reliability_report.add(
                measurement(
                    sc,
                    verdict,
                    fault="secrets: the whole flow with recognisable webhook secret, Unleash tokens, signaler token",
                    what_happened=(
                        f"{io.count} HTTP exchanges and CLI runs (success and error paths: {outcome['errors']}), "
                        f"{sc.scanned.get('files')} files and {sc.scanned.get('texts')} other texts "
                        f"({sc.scanned.get('lines')} lines, {sc.scanned.get('bytes', 0) // 1024} KiB) searched for "
                        f"{len(secrets)} secret values"
                    ),
                    fault_s=None,
                    recover_s=None,
                    recovered_when="(no outage)",
                    complete_s=None,
                    exchanges=io.count,
                )
            )
            control = scan_text("control", f"a line with {SECRETS.signaler} in it", secrets)
            assert [leak.secret for leak in control] == ["signaler token"], "the scan itself does not work"
            assert verdict.record["phase"] == "completed", verdict.record
            verdict.assert_nothing_lost()
            assert outcome["unexpected"] == [], outcome["unexpected"]
    finally:
        await flags.close()


async def flow(sc: Scenario, io: Exchanges, http: httpx.AsyncClient, flags: UnleashFlagStore) -> dict[str, Any]:
    unexpected: list[str] = []
    errors: list[str] = []

    def expect(what: str, got: int, *wanted: int) -> None:
        (errors if got >= 400 else []).append(f"{what} {got}")
        if got not in wanted:
            unexpected.append(f"{what}: {got}, wanted {wanted}")

    token = {"Authorization": f"Bearer {SECRETS.signaler}"}
    await sc.start_workers({"1111111": "v1", "2222222": "v2"})

    # The webhook: a wrong signature, a ping, then v1's deployment (and its redelivery).
    body, headers = delivery(V1_SHA)
    wrong = {**headers, "X-Hub-Signature-256": sign("not-the-secret", body)}
    expect(
        "webhook wrong signature",
        (await io.http(http, "POST", "/webhooks/github", content=body, headers=wrong)).status_code,
        401,
    )
    ping_body, ping_headers = delivery(V1_SHA, event="ping")
    expect(
        "webhook ping",
        (await io.http(http, "POST", "/webhooks/github", content=ping_body, headers=ping_headers)).status_code,
        200,
    )
    expect(
        "webhook v1", (await io.http(http, "POST", "/webhooks/github", content=body, headers=headers)).status_code, 202
    )
    expect(  # the same answer as the first time: Temporal ran the deploy call of this delivery id once
        "webhook redelivery",
        (await io.http(http, "POST", "/webhooks/github", content=body, headers=headers)).status_code,
        202,
    )
    await sc.ci_result(120)
    await flags.wait_for_routing("subscription")

    # The signaler over HTTP: no token, a wrong token, an invalid body, then real starts (routed by the flags).
    start = {"customer_id": "c", "plan": "basic", "price_cents": 900}
    instruction = {"action": "start", "args": {"workflowId": "http-0", "workflowType": "subscription", "args": [start]}}
    expect(
        "instruction without token", (await io.http(http, "POST", "/instruction", json=instruction)).status_code, 401
    )
    bad = {"Authorization": f"Bearer {WRONG_BEARER}"}
    expect(
        "instruction wrong token",
        (await io.http(http, "POST", "/instruction", json=instruction, headers=bad)).status_code,
        401,
    )
    invalid = {"action": "start", "args": {"workflowType": "subscription"}}
    expect(
        "instruction invalid",
        (await io.http(http, "POST", "/instruction", json=invalid, headers=token)).status_code,
        400,
    )
    for n in range(5):
        one = {"action": "start", "args": {**instruction["args"], "workflowId": f"http-{n}"}}  # type: ignore[dict-item]
        response = await io.http(http, "POST", "/instruction", json=one, headers=token)
        expect("instruction start", response.status_code, 200)
        if response.status_code == 200:
            sc.started[f"http-{n}"] = response.json()["runId"]
    expect(
        "instruction duplicate",
        (await io.http(http, "POST", "/instruction", json=instruction, headers=token)).status_code,
        409,
    )
    await sc.start_subscriptions(COUNT)

    # v2 through the webhook (the default schedule: 10 % a minute), then promoted from the CLI.
    body, headers = delivery(V2_SHA)
    expect(
        "webhook v2", (await io.http(http, "POST", "/webhooks/github", content=body, headers=headers)).status_code, 202
    )
    await sc.until(
        lambda s: s.phase is Phase.ROLLING_OUT and s.to_version is not None, timeout=60, what="v2 rolling out"
    )
    code, _ = await io.cli("promote", "subscription", "--reason", "reliability secrets run")
    expect("cli promote", 1 if code else 0, 0)

    # The CLI, read commands and error paths, with every secret in its environment.
    wrong_admin = {**sc.env, "DIACHRONIC_UNLEASH_ADMIN_TOKEN": WRONG_ADMIN}
    unreachable = {**sc.env, "DIACHRONIC_UNLEASH_URL": f"http://127.0.0.1:{free_port()}"}
    runs = await asyncio.gather(
        io.cli("status", "subscription"),
        io.cli("status", "subscription", "--json"),
        io.cli("status", "--json"),
        io.cli("flags", "list", "subscription", "--archived", "--json"),
        io.cli("workers", "--json"),
        io.cli("k8s", "manifests", "--image", "diachronic:test"),
        io.cli("deploy", "subscription", "bad.version"),
        io.cli("status", "no-such-workflow"),
        io.cli("flags", "list", "subscription", env=wrong_admin),
        io.cli("flags", "list", "subscription", env=unreachable),
        io.cli("start", "subscription", "--id", "cli-1", "--input", json.dumps(start), env=unreachable),
    )
    wanted = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    for (code, text), want, name in zip(
        runs,
        wanted,
        [
            "status",
            "status --json",
            "status all",
            "flags",
            "workers",
            "k8s",
            "bad deploy",
            "unknown",
            "wrong admin",
            "unreachable",
            "start unreachable",
        ],
        strict=True,
    ):
        expect(f"cli {name}", 1 if code else 0, want)
        if code:
            errors.append(f"cli {name}: {text.strip().splitlines()[-1][:80] if text.strip() else ''}")
    expect("healthz", (await io.http(http, "GET", "/healthz")).status_code, 200)
    expect("openapi", (await io.http(http, "GET", "/openapi.json")).status_code, 200)
    return {"unexpected": unexpected, "errors": len(errors)}
