"""Prometheus metrics: ``/metrics`` on the HTTP app scraped during a real rollout (dev server, CI worker, embedded
flags), the counters of webhook deliveries and failed activity attempts, and the worker's own endpoint."""

from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from tests.ci_helpers import CIHarness, event, fast
from tests.conditions import eventually
from tests.http_helpers import deployment_status, signed
from tests.pipeline_workflows import FailingWorkflow, always_fails

from diachronic.ci import client as ci
from diachronic.ci.contracts import Phase
from diachronic.ci.planner.schedule import parse_steps
from diachronic.contracts import ci_workflow_id
from diachronic.http.dashboard.models import Unavailable
from diachronic.http.metrics import status_families
from diachronic.metrics import MetricsInterceptor, serving

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


@pytest.mark.devserver
async def test_a_scrape_during_a_rollout_shows_phase_percentages_and_migration(
    h: CIHarness, http: httpx.AsyncClient, wf_served: str
) -> None:
    wf = wf_served
    await ci.deploy(h.client, h.task_queue, event(wf, "v1"))
    await h.client.get_workflow_handle(ci_workflow_id(wf)).result()
    await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps("30@0.3s,100@600s")))

    async def at_30() -> Samples | None:
        samples = await scrape(http)
        return samples if value(samples, "diachronic_rollout_percent", workflow=wf) == 30 else None

    samples = await eventually(at_30, what="/metrics to show the rollout at 30 %")
    assert value(samples, "diachronic_deployment_phase", workflow=wf, phase="rolling_out") == 1
    assert value(samples, "diachronic_deployment_phase", workflow=wf, phase="completed") == 0
    assert (value(samples, "diachronic_deployments", phase="rolling_out") or 0) >= 1
    assert value(samples, "diachronic_version_percent", workflow=wf, version="v2") == 30
    assert value(samples, "diachronic_version_percent", workflow=wf, version="v1") == 100
    assert value(samples, "diachronic_version_share_percent", workflow=wf, version="v2") == 30
    assert value(samples, "diachronic_version_share_percent", workflow=wf, version="v1") == 70
    assert value(samples, "diachronic_rollout_paused", workflow=wf) == 0
    assert value(samples, "diachronic_queued_deployments", workflow=wf) == 0
    assert value(samples, "diachronic_status_readable", workflow=wf) == 1

    async def migration_seen() -> Samples | None:
        samples = await scrape(http)
        return samples if value(samples, "diachronic_migration_remaining", workflow=wf) is not None else None

    samples = await eventually(migration_seen, what="the migration's numbers")
    assert value(samples, "diachronic_migration_signalled", workflow=wf) == 0  # nothing ran on v1
    assert value(samples, "diachronic_migration_remaining", workflow=wf) == 0

    await ci.control(h.client, wf, "promote")

    async def completed() -> Samples | None:
        samples = await scrape(http)
        done = value(samples, "diachronic_deployment_phase", workflow=wf, phase="completed") == 1
        return samples if done else None

    samples = await eventually(completed, what="/metrics to show the deployment completed")
    assert value(samples, "diachronic_version_percent", workflow=wf, version="v2") == 100
    assert value(samples, "diachronic_version_percent", workflow=wf, version="v1") is None  # retired: archived


@pytest.mark.devserver
async def test_webhook_deliveries_are_counted_by_result(http: httpx.AsyncClient) -> None:
    before = await scrape(http)
    ping_body, ping_headers = signed({"zen": "hi"}, event="ping")
    assert (await http.post("/webhooks/github", content=ping_body, headers=ping_headers)).status_code == 200
    body, headers = signed(deployment_status(), secret="not-the-secret")
    assert (await http.post("/webhooks/github", content=body, headers=headers)).status_code == 401
    after = await scrape(http)

    def delta(**labels: str) -> float:
        name = "diachronic_webhook_deliveries_total"
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    assert delta(event="ping", result="pong") == 1
    assert delta(event="deployment_status", result="Unauthorized") == 1


async def test_every_failed_activity_attempt_is_counted_and_the_worker_serves_it(time_env: WorkflowEnvironment) -> None:
    queue = f"metrics-{uuid.uuid4()}"
    with serving("127.0.0.1", 0) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            before = parse((await http.get("/metrics")).text)
            async with Worker(
                time_env.client,
                task_queue=queue,
                workflows=[FailingWorkflow],
                activities=[always_fails],
                interceptors=[MetricsInterceptor()],
            ):
                with pytest.raises(WorkflowFailureError):
                    await time_env.client.execute_workflow(
                        FailingWorkflow.run, id=f"fail-{uuid.uuid4()}", task_queue=queue
                    )
            after = parse((await http.get("/metrics")).text)
    labels = {"activity": "always_fails", "error": "FlagStoreError"}
    name = "diachronic_activity_failures_total"
    assert (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0) == 3


def test_a_workflow_whose_status_cannot_be_read_shows_as_unreadable() -> None:
    families = {f.name: f for f in status_families([], [Unavailable(workflow_name="billing", error="X", message="m")])}
    [sample] = families["diachronic_status_readable"].samples
    assert (sample.labels, sample.value) == ({"workflow": "billing"}, 0.0)
    assert {s.labels["phase"]: s.value for s in families["diachronic_deployments"].samples} == dict.fromkeys(
        [p.value for p in Phase], 0.0
    )
