"""Temporal behind TLS, mTLS and an API key, as in production: the CLI, the CI worker and the local workers it
starts all go through a TLS-terminating nginx (client certificate required, ``Authorization: Bearer <key>``
checked) in front of the dev server; each wrong credential fails in one line and changes nothing.

One proxy, one dev server and one CI worker for the module (``tests/tls_fixtures.py``); stopped whatever happens.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError
from tests.reliability.harness import free_port
from tests.tls_fixtures import API_KEY, NginxProxy, Pki, nginx_proxy

from diachronic.contracts import ci_workflow_id
from diachronic.devserver import DevServer, start_dev_server
from diachronic.settings import CI_TASK_QUEUE, Settings
from diachronic.temporal import TemporalConnection, connect, has_poller, resolve_connection
from diachronic.workers.local import LocalWorkers

pytestmark = pytest.mark.devserver

DIACHRONIC = [sys.executable, "-m", "diachronic.cli.__main__"]
WORKER = f"{sys.executable} -m examples.subscription.worker_%s"


@dataclass
class Secured:
    """The dev server, nginx in front of it, and the environment of a correctly configured user."""

    server: DevServer
    proxy: NginxProxy
    pki: Pki
    data: Path
    env: dict[str, str]

    def connection(self) -> TemporalConnection:
        return resolve_connection(Settings(), environ=self.env)

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*DIACHRONIC, *args], env=env or self.env, capture_output=True, text=True, timeout=120, cwd=ROOT
        )


ROOT = Path(__file__).resolve().parent.parent


def _clean_environment() -> dict[str, str]:
    """Ours, without any Temporal connection setting a developer may have exported."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "DIACHRONIC_TEMPORAL_"))}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    folder = tmp_path_factory.mktemp("tls")
    pki = Pki.create(folder / "pki")
    data = folder / "data"
    server = start_dev_server(folder / "temporal", port=free_port((0, 10, 20)), ui=False)
    worker: subprocess.Popen[bytes] | None = None
    try:
        with nginx_proxy(folder / "nginx", server.address, mode="grpc", pki=pki) as proxy:
            # The user's side, in Temporal's own convention (temporalio.envconfig): nothing diachronic-specific.
            env = _clean_environment() | {
                "DIACHRONIC_DATA_DIR": str(data),
                "TEMPORAL_ADDRESS": proxy.address,
                "TEMPORAL_API_KEY": API_KEY,
                "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki.ca),
                "TEMPORAL_TLS_CLIENT_CERT_PATH": str(pki.client.cert),
                "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pki.client.key),
            }
            secured = Secured(server, proxy, pki, data, env)
            log = (folder / "ci-worker.log").open("wb")
            worker = subprocess.Popen([*DIACHRONIC, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            asyncio.run(_wait_for_poller(secured.connection(), CI_TASK_QUEUE, worker))
            yield secured
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        LocalWorkers(data / "workers").stop_all_sync()
        server.stop()
    # What the CI worker and the local workers logged: never the API key nor key material.
    logs = [folder / "ci-worker.log", *(data / "workers").glob("*.log")]
    written = "".join(path.read_text(errors="replace") for path in logs if path.exists())
    assert written and API_KEY not in written and "PRIVATE KEY" not in written


async def _wait_for_poller(connection: TemporalConnection, queue: str, process: subprocess.Popen[bytes]) -> None:
    client = await _client(connection)
    while not await has_poller(client, queue):
        assert process.poll() is None, "the CI worker exited"
        await asyncio.sleep(0.1)


async def _client(connection: TemporalConnection) -> Client:
    return await connect(connection)


def wait_for_phase(secured: Secured, workflow: str, phase: str) -> dict[str, object]:
    """``diachronic status --json`` until the deployment reaches ``phase`` (read through the proxy too)."""
    while True:
        status = secured.run("status", workflow, "--json")
        body: dict[str, object] = json.loads(status.stdout) if status.returncode == 0 else {}
        if body.get("phase") == phase and not body.get("queued"):
            return body
        assert body.get("phase") != "failed", body
        time.sleep(0.3)


def test_a_deployment_runs_end_to_end_through_mtls_and_an_api_key(secured: Secured) -> None:
    """Initial deployment of v1, then v2 rolled out and migrated: CLI, CI worker and both local workers reach
    Temporal only through the proxy, each with the client certificate and the API key."""
    deployed = secured.run("deploy", "subscription", "v1", "--worker-cmd", WORKER % "v1")
    assert deployed.returncode == 0, deployed.stderr
    wait_for_phase(secured, "subscription", "completed")
    start = '{"customer_id": "c-1", "plan": "basic", "price_cents": 900}'
    started = secured.run("start", "subscription", "--id", "sub-tls-1", "--input", start)
    assert started.returncode == 0, started.stderr
    assert started.stdout.split()[2] == "subscription-v1"

    deployed = secured.run(
        "deploy", "subscription", "v2", "--worker-cmd", WORKER % "v2", "--steps", "100@1s", "--poll", "0.5"
    )
    assert deployed.returncode == 0, deployed.stderr
    body = wait_for_phase(secured, "subscription", "completed")
    assert body["toVersion"]["versionId"] == "v2"  # type: ignore[index]

    async def moved() -> str:
        client = await _client(secured.connection())
        handle = client.get_workflow_handle("sub-tls-1")
        while (await handle.describe()).task_queue != "subscription-v2":
            await asyncio.sleep(0.2)
        status: dict[str, object] = await handle.query("status")
        return str(status["version"])

    assert asyncio.run(moved()) == "v2"  # v2's worker, started with our connection, runs the migrated workflow
    assert API_KEY not in deployed.stderr + deployed.stdout


def _bad(secured: Secured, **changes: str | None) -> dict[str, str]:
    env = dict(secured.env)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


CASES = {
    "client certificate of another CA": (
        lambda s: _bad(
            s,
            DIACHRONIC_TEMPORAL_TLS_CERT=str(s.pki.rogue_client.cert),
            DIACHRONIC_TEMPORAL_TLS_KEY=str(s.pki.rogue_client.key),
        ),
        "client certificate",
    ),
    "no client certificate": (
        lambda s: _bad(s, TEMPORAL_TLS_CLIENT_CERT_PATH=None, TEMPORAL_TLS_CLIENT_KEY_PATH=None),
        "client certificate",
    ),
    "missing key": (lambda s: _bad(s, TEMPORAL_TLS_CLIENT_KEY_PATH=None), "without its private key"),
    "key of another certificate": (
        lambda s: _bad(s, DIACHRONIC_TEMPORAL_TLS_KEY=str(s.pki.rogue_client.key)),
        "does not belong to the client certificate",
    ),
    "wrong CA": (lambda s: _bad(s, DIACHRONIC_TEMPORAL_TLS_CA=str(s.pki.rogue_ca)), "not signed by a trusted CA"),
    "wrong API key": (lambda s: _bad(s, DIACHRONIC_TEMPORAL_API_KEY="wrong-key-SENTINEL-77"), "API key was refused"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_credential_fails_in_one_line_and_changes_nothing(secured: Secured, case: str) -> None:
    make_env, says = CASES[case]
    workflow = "tlsbad" + str(list(CASES).index(case))
    result = secured.run("deploy", workflow, "v1", "--worker-cmd", WORKER % "v1", env=make_env(secured))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "wrong-key-SENTINEL-77" not in result.stderr + result.stdout
    assert API_KEY not in result.stderr + result.stdout

    async def nothing_changed() -> None:
        client = await _client(secured.connection())
        with pytest.raises(RPCError):
            await client.get_workflow_handle(ci_workflow_id(workflow)).describe()

    asyncio.run(nothing_changed())
    started = [w.name for w in asyncio.run(LocalWorkers(secured.data / "workers").list_all())]
    assert not any(workflow in name for name in started), started


def test_the_embedded_default_stays_plain(secured: Secured) -> None:
    """Straight to the dev server with nothing but its address: plain text, no configuration needed; the same
    plain request to the TLS proxy is refused in one line that names TLS."""
    env = _clean_environment() | {"DIACHRONIC_DATA_DIR": str(secured.data), "HOME": str(secured.data)}
    direct = secured.run("status", "--json", env=env | {"DIACHRONIC_TEMPORAL_ADDRESS": secured.server.address})
    assert direct.returncode == 0, direct.stderr
    assert "workflows" in json.loads(direct.stdout)
    refused = secured.run("status", "--json", env=env | {"DIACHRONIC_TEMPORAL_ADDRESS": secured.proxy.address})
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "expect TLS" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
