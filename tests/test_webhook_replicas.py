"""The HTTP app is stateless: two ``diachronic serve`` processes with separate data folders (two replicas behind a
load balancer) receive the same GitHub delivery at the same moment, and again after both restarted; the CI
carries out exactly one deployment per delivery. The record of what was delivered is the CI's: each delivery is a
deploy signal carrying its delivery id, which the CI run remembers (a second one is a duplicate); a redelivery
after that run ended starts a new run, which finds the version already the newest live one and does nothing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from tests.ci_helpers import CIHarness, served_workflow
from tests.conditions import eventually
from tests.http_helpers import SECRET, deployment_status, signed
from tests.reliability.harness import free_port

from diachronic.ci import client as ci
from diachronic.ci.contracts import FINAL_PHASES, CIState, Phase
from diachronic.ci.workflow import CIWorkflow
from diachronic.contracts import ci_workflow_id
from diachronic.webhook.github import SHORT_SHA_LENGTH

pytestmark = pytest.mark.devserver

DIACHRONIC = [sys.executable, "-m", "diachronic.cli.__main__"]
SHA1 = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
SHA2 = "b2c3d4e5f60718293a4b5c6d7e8f901234567890"


@contextmanager
def replicas(harness: CIHarness, folder: Path, count: int = 2) -> Iterator[list[str]]:
    """``count`` ``diachronic serve`` processes, each with its own data folder; yields their base URLs."""
    processes: list[subprocess.Popen[bytes]] = []
    urls = []
    try:
        for i in range(count):
            port = free_port()
            data = folder / f"replica-{i}"
            env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "DIACHRONIC_"))} | {
                "DIACHRONIC_DATA_DIR": str(data),
                "DIACHRONIC_TEMPORAL_ADDRESS": harness.client.service_client.config.target_host,
                "DIACHRONIC_CI_TASK_QUEUE": harness.task_queue,
                "DIACHRONIC_GITHUB_WEBHOOK_SECRET": SECRET,
                "DIACHRONIC_SIGNALER_TOKEN": "replica-token",
            }
            log = (folder / f"replica-{i}.log").open("ab")
            command = [*DIACHRONIC, "serve", "--port", str(port)]
            processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
            urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(urls, processes, strict=True):
            _wait_healthy(url, process)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    while True:
        assert process.poll() is None, f"diachronic serve at {url} exited with {process.returncode}"
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)


async def deliver_everywhere(urls: list[str], body: dict[str, Any], delivery: str, times: int = 2) -> list[str]:
    """The same delivery to every replica, ``times`` each, all at once; returns the actions they answered."""
    raw, headers = signed(body, delivery=delivery)
    async with httpx.AsyncClient(timeout=60) as http:
        responses = await asyncio.gather(
            *(http.post(f"{url}/webhooks/github", content=raw, headers=headers) for url in urls for _ in range(times))
        )
    assert all(r.status_code in (200, 202) for r in responses), [r.text for r in responses]
    return [str(r.json()["action"]) for r in responses]


async def deployments_of(client: Client, wf: str) -> list[tuple[str, str]]:
    """(version, final phase) of every deployment the runs of ``ci.<wf>`` carried out, oldest run first; each run
    awaited to its end. A deployment found to be a duplicate when it started did nothing: not counted."""
    found: list[tuple[str, str]] = []
    runs = [e async for e in client.list_workflows(f'WorkflowId="{ci_workflow_id(wf)}"')]
    for execution in sorted(runs, key=lambda e: e.start_time):
        result = await client.get_workflow_handle(execution.id, run_id=execution.run_id).result()
        found.extend(
            (d["request"]["event"]["versionId"], d["phase"])
            for d in result["deployments"]
            if d["phase"] in FINAL_PHASES and d["phase"] != Phase.DUPLICATE
        )
    return found


@pytest.fixture
async def wf(h: CIHarness) -> AsyncIterator[str]:
    async with served_workflow(h.client, SHA1[:SHORT_SHA_LENGTH], SHA2[:SHORT_SHA_LENGTH], prefix="rep") as name:
        yield name


async def test_two_replicas_start_a_delivery_once_also_after_a_restart(h: CIHarness, tmp_path: Path, wf: str) -> None:
    # The environment the test CI serves (a deploy event for another one is refused).
    first = deployment_status(sha=SHA1, payload={"workflowName": wf}, environment="development")
    dark = deployment_status(sha=SHA2, payload={"workflowName": wf, "isDarkDeploy": True}, environment="development")
    handle = h.client.get_workflow_handle(ci_workflow_id(wf))

    async def awaiting_continue() -> bool:
        return (await ci.status(h.client, wf)).phase is Phase.AWAITING_CONTINUE

    async def repeats_recognised() -> bool:
        """The run waiting for continue took d-v2 once; its 7 repeats (3 before the restart, 4 after) it ignored."""
        state: CIState = await handle.query(CIWorkflow.db)
        return state.ignored == 7

    with replicas(h, tmp_path) as urls:
        await deliver_everywhere(urls, first, "d-v1")  # at the same moment, twice to each replica
        await handle.result()  # the initial deployment ran; its CI run ended
    with replicas(h, tmp_path) as urls:  # both restarted: they remember nothing
        await deliver_everywhere(urls, first, "d-v1")  # a new CI run: v1 is already the newest live version
        await handle.result()
        await deliver_everywhere(urls, dark, "d-v2")  # a dark deploy keeps its CI run waiting for "continue"
        await eventually(awaiting_continue, what="the dark deploy waiting for continue")
    with replicas(h, tmp_path) as urls:  # restarted again, while that CI run still waits
        await deliver_everywhere(urls, dark, "d-v2")  # the same run: it took this delivery already
        await eventually(repeats_recognised, what="every repeat of d-v2 recognised as a duplicate")
        status = await ci.status(h.client, wf)
        assert status.phase is Phase.AWAITING_CONTINUE and status.queued == []
    await ci.control(h.client, wf, "cancel")
    assert await deployments_of(h.client, wf) == [(SHA1[:7], "completed"), (SHA2[:7], "cancelled")]
