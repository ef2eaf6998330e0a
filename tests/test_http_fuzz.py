"""Schemathesis fuzzes the published OpenAPI document against ``diachronic serve`` (a real uvicorn process on
loopback, on the real Temporal dev server): no generated input may get a 5xx, and every response must conform
to the document (status, content type, body schema, headers); schema-invalid requests must be refused (4xx)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from tests.ci_helpers import ci_harness
from tests.http_helpers import SECRET, TOKEN, bearer
from tests.signaler_workflows import Anything

from diachronic.flags.local import LocalFlagStore
from diachronic.http import create_app, running
from diachronic.settings import Settings

pytestmark = pytest.mark.devserver

EXAMPLES = int(os.environ.get("DIACHRONIC_FUZZ_EXAMPLES", "60"))
FUZZ_QUEUE = "fuzz-anything"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``diachronic serve`` as a user runs it: settings from the environment, its own process."""
    data = tmp_path_factory.mktemp("fuzz")
    port = _free_port()
    env = os.environ | {
        "DIACHRONIC_DATA_DIR": str(data),
        "DIACHRONIC_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "DIACHRONIC_GITHUB_WEBHOOK_SECRET": SECRET,
        "DIACHRONIC_SIGNALER_TOKEN": TOKEN,
        "DIACHRONIC_SIGNALER_UPDATE_TIMEOUT_S": "0.5",
        "DIACHRONIC_CI_TASK_QUEUE": "fuzz-ci",
    }
    log = data / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "diachronic"), "-v", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, log.read_text()
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "diachronic serve did not come up"
                time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=15)
    output = log.read_text()
    assert SECRET not in output and TOKEN not in output, "a secret reached the server's log"
    assert "Traceback" not in output, output[-3000:]


@pytest.fixture(scope="module")
def api(server: str) -> OpenApiSchema:
    return schemathesis.openapi.from_url(f"{server}/openapi.json")


def pin_task_queues(body: Any) -> None:
    """Send every generated start to the queue the catch-all worker serves, so updates are answered (a start on
    a random queue nobody serves makes a later update wait for its timeout: a correct 504, but not a caller's
    fault). Only non-empty, valid queue names are replaced (a valid value for another valid value: an invalid case
    stays invalid); an empty one still exercises routing by flags."""
    if not isinstance(body, dict):
        return
    items = body.get("args")
    for args in items if isinstance(items, list) else [items]:
        if isinstance(args, dict) and isinstance(args.get("taskQueue"), str) and 0 < len(args["taskQueue"]) <= 1000:
            args["taskQueue"] = FUZZ_QUEUE


def pin_github_event(case: schemathesis.Case, mode: GenerationMode, success: bool) -> None:
    """A random X-GitHub-Event would only ever be "ignored": make it a deployment_status so the payload is parsed
    and mapped (half the time with state success, so deployments are started); keep a header a negative case
    removed (that is its invalid part)."""
    headers = case.headers if case.headers is not None else {}
    if mode is GenerationMode.POSITIVE or "X-GitHub-Event" in headers:
        headers["X-GitHub-Event"] = "deployment_status"
    if mode is GenerationMode.POSITIVE:
        headers["X-GitHub-Delivery"] = str(uuid.uuid4())
        body = case.body if isinstance(case.body, dict) else {}
        status, deployment = body.get("deployment_status"), body.get("deployment")
        if success and isinstance(status, dict) and isinstance(deployment, dict):
            status["state"] = "success"
            if isinstance(deployment.get("payload"), dict):
                deployment["payload"]["workflowName"] = "fuzzwf"  # else no repository mapping would name it
    case.headers = headers


# schemathesis' pytest plugin (``from_fixture``) does not run on pytest 9; its strategies drive hypothesis directly,
# in a thread, while this event loop runs the catch-all worker (and, for the webhook, the app in dev mode).
@pytest.mark.parametrize(
    ("method", "path", "mode"),
    [
        ("GET", "/healthz", GenerationMode.POSITIVE),
        ("POST", "/webhooks/github", GenerationMode.POSITIVE),
        ("POST", "/webhooks/github", GenerationMode.NEGATIVE),
        ("POST", "/instruction", GenerationMode.POSITIVE),
        ("POST", "/instruction", GenerationMode.NEGATIVE),
        ("GET", "/api/workflows", GenerationMode.POSITIVE),
        ("GET", "/api/workflows/{name}", GenerationMode.POSITIVE),
        ("GET", "/api/workflows/{name}", GenerationMode.NEGATIVE),
        ("POST", "/api/workflows/{name}/controls/{control}", GenerationMode.POSITIVE),
        ("POST", "/api/workflows/{name}/controls/{control}", GenerationMode.NEGATIVE),
    ],
    ids=[
        "healthz",
        "webhook-valid",
        "webhook-invalid",
        "instruction-valid",
        "instruction-invalid",
        "dashboard-list",
        "dashboard-workflow-valid",
        "dashboard-workflow-invalid",
        "dashboard-control-valid",
        "dashboard-control-invalid",
    ],
)
async def test_generated_requests_never_get_a_5xx_and_responses_match_the_document(
    dev_env: WorkflowEnvironment,
    api: OpenApiSchema,
    server: str,
    tmp_path: Path,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    strategy = api[path][method].as_strategy(generation_mode=mode)
    webhook = path == "/webhooks/github"
    base_url = server

    @given(case=strategy, success=st.booleans())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case, success: bool) -> None:
        if webhook:
            pin_github_event(case, mode, success)
        else:
            pin_task_queues(case.body)
        case.call_and_validate(base_url=base_url, headers=bearer(), checks=CHECKS, timeout=30)

    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(Worker(dev_env.client, task_queue=FUZZ_QUEUE, workflows=[Anything]))
        if webhook:
            # Unsigned deliveries are accepted only by the app inside `diachronic dev`: the signature cannot be
            # fuzzed, so the payload is, against the dev-mode app (the same document, the same routes). A CI
            # worker takes the deployments (the webhook's deploy call waits until one does).
            (tmp_path / "ci").mkdir()
            await stack.enter_async_context(ci_harness(dev_env.client, tmp_path / "ci", "fuzz-ci"))
            flags = LocalFlagStore(tmp_path / "flags.sqlite3")
            stack.push_async_callback(flags.close)
            config = Settings(data_dir=tmp_path, ci_task_queue="fuzz-ci")
            app = create_app(config, dev_env.client, flags, dev=True)
            running_app = await stack.enter_async_context(running(app))
            base_url = f"http://127.0.0.1:{running_app.port}"
        await asyncio.to_thread(check)


def test_the_document_describes_every_route(server: str) -> None:
    document = httpx.get(f"{server}/openapi.json").json()
    assert set(document["paths"]) == {
        "/healthz",
        "/webhooks/github",
        "/instruction",
        "/api/workflows",
        "/api/workflows/{name}",
        "/api/workflows/{name}/controls/{control}",
    }
    body = document["paths"]["/instruction"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {one["$ref"].rsplit("/", 1)[1] for one in body["oneOf"]} == {
        "SignalInstruction",
        "StartInstruction",
        "SignalWithStartInstruction",
        "SignalBatchInstruction",
        "SignalWithStartBatchInstruction",
        "UpdateInstruction",
        "UpdateOrStartInstruction",
    }
    assert document["components"]["securitySchemes"] == {"bearerAuth": {"type": "http", "scheme": "bearer"}}
