"""``diachronic doctor`` against real services: the dev server with a CI worker, the real Unleash and kmock as the
Kubernetes API. All good; Temporal down; an Unleash token wrong: one line per check, exit code, no secret."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest
from tests.ci_helpers import CIHarness
from tests.reliability.harness import free_port
from tests.unleash_fixtures import UnleashServer
from typer.testing import CliRunner

import diachronic.cli.doctor  # noqa: F401  (registers the command)
from diachronic.cli import app
from diachronic.temporal import wait_for_poller
from kmock_fixtures import Cluster, running_cluster

pytestmark = [pytest.mark.devserver, pytest.mark.unleash]

REVIEWS = kmock.resource("authorization.k8s.io", "v1", "selfsubjectaccessreviews")


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """kmock, with the API server's answer to a SelfSubjectAccessReview: ``denied`` verbs are refused."""
    async with running_cluster(tmp_path) as cluster:
        denied: set[str] = set()

        def review(request: kmock.Request) -> dict[str, Any]:
            verb = request.data["spec"]["resourceAttributes"]["verb"]
            for key in [k for k in cluster.api.objects if k[0] == REVIEWS]:  # kmock keeps what it is sent; a
                del cluster.api.objects[key]  # review is no object: forget it, or the next one "already exists"
            return {**request.data, "status": {"allowed": verb not in denied}}

        cluster.api[REVIEWS, kmock.action.CREATE] << review
        cluster.denied = denied  # type: ignore[attr-defined]
        yield cluster


@pytest.fixture
async def env(h: CIHarness, unleash: UnleashServer, cluster: Cluster, data_dir: Path) -> AsyncIterator[dict[str, str]]:
    await wait_for_poller(h.client, h.task_queue)
    yield unleash.variables() | {
        "DIACHRONIC_DATA_DIR": str(data_dir),
        "DIACHRONIC_TEMPORAL_ADDRESS": h.client.service_client.config.target_host,
        "DIACHRONIC_CI_TASK_QUEUE": h.task_queue,
        "DIACHRONIC_WORKERS": "kubernetes",
        "DIACHRONIC_KUBECONFIG": str(cluster.kubeconfig),
        "DIACHRONIC_KUBERNETES_NAMESPACE": "workers",
    }


async def doctor(env: dict[str, str], *args: str) -> tuple[int, str]:
    """The command, in a thread: it runs its own event loop, while this one keeps serving the CI worker."""
    result = await asyncio.to_thread(CliRunner().invoke, app, ["doctor", *args], env=env)
    return result.exit_code, result.output


def lines(output: str) -> dict[str, str]:
    """``check -> "ok  detail"`` or ``"FAIL detail"``: one line per check."""
    found = {}
    for line in output.strip().splitlines():
        status, _, rest = line.partition(" ")
        check, _, detail = rest.strip().partition(": ")
        found[check] = f"{status} {detail}"
    return found


def secrets(env: dict[str, str]) -> list[str]:
    return [v for k, v in env.items() if k.endswith("_TOKEN")] + [
        v.rpartition(".")[2] for k, v in env.items() if k.endswith("_TOKEN")
    ]


async def test_all_good(env: dict[str, str]) -> None:
    code, output = await doctor(env)
    found = lines(output)
    assert code == 0, output
    assert list(found) == ["temporal", "temporal namespace", "ci worker", "flag store", "workers", "github"]
    assert all(v.startswith("ok ") for v in found.values()), output
    assert "both tokens accepted" in found["flag store"] and "list and delete" in found["workers"]
    assert "not configured" in found["github"]
    code, output = await doctor(env, "--json")
    report = json.loads(output)
    assert code == 0 and report["ok"] is True and len(report["checks"]) == 6
    assert not any(s in output for s in secrets(env))


async def test_temporal_down(env: dict[str, str]) -> None:
    env = env | {"DIACHRONIC_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}
    code, output = await doctor(env)
    found = lines(output)
    assert code == 1
    assert found["temporal"].startswith("FAIL ") and "connection refused: is Temporal running there?" in output
    assert found["flag store"].startswith("ok ") and found["workers"].startswith("ok ")  # the others still run
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("variable", "says"),
    [
        ("DIACHRONIC_UNLEASH_ADMIN_TOKEN", "rejected the admin token (HTTP 401): check DIACHRONIC_UNLEASH_ADMIN_TOKEN"),
        (
            "DIACHRONIC_UNLEASH_CLIENT_TOKEN",
            "rejected the client token (HTTP 401): check DIACHRONIC_UNLEASH_CLIENT_TOKEN",
        ),
    ],
)
async def test_an_unleash_token_wrong(env: dict[str, str], variable: str, says: str) -> None:
    env = env | {variable: "*:development.wrong-token-SENTINEL-0042"}
    code, output = await doctor(env, "--json")
    report = {c["check"]: c for c in json.loads(output)["checks"]}
    assert code == 1 and report["flag store"]["ok"] is False
    assert says in report["flag store"]["detail"]
    assert report["temporal"]["ok"] is True
    assert not any(s in output for s in secrets(env)), output


async def test_kubernetes_rbac_that_forbids_delete(env: dict[str, str], cluster: Cluster) -> None:
    cluster.denied.add("delete")  # type: ignore[attr-defined]
    code, output = await doctor(env)
    assert code == 1
    assert (
        "FAIL workers: Kubernetes at" in output and "denies delete on deployments.apps in namespace 'workers'" in output
    )
