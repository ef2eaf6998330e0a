"""The webhook's pure parts and its rules, without a server: signature, payload mapping, delivery log, receiver."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.http_helpers import SECRET, deployment_status, signed

from diachronic.contracts import DeployEvent, GitHubDeploymentRef
from diachronic.errors import BackendError
from diachronic.webhook import (
    BadSignature,
    DeliveryLog,
    GitHubReceiver,
    PayloadError,
    RepositoryMap,
    WebhookDisabled,
    parse_body,
    parse_deployment_status,
    sign,
    signature_matches,
    to_deploy_event,
)

REPOS = RepositoryMap({"acme/orders": "orders", "Acme/Orders:staging": "ordersStaging"})


def test_signature_is_githubs_hmac_sha256_of_the_raw_body() -> None:
    # The example from GitHub's "Validating webhook deliveries" documentation.
    assert sign("It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )
    body = b'{"a": 1}'
    assert signature_matches(SECRET, body, sign(SECRET, body))


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha1=abc", sign("another secret", b'{"a": 1}'), sign(SECRET, b'{"a": 2}'), "sha256=é"],
    ids=["missing", "empty", "no digest", "sha1", "other secret", "other body", "non-ascii"],
)
def test_a_wrong_signature_never_matches(header: str | None) -> None:
    assert not signature_matches(SECRET, b'{"a": 1}', header)


def test_an_empty_secret_matches_nothing() -> None:
    assert not signature_matches("", b"x", sign("", b"x"))


def test_success_maps_to_the_deploy_event_of_the_wire_protocol() -> None:
    data = deployment_status(payload={"workflowName": "billing", "isDarkDeploy": True})
    event = to_deploy_event(parse_deployment_status(data), REPOS)
    assert event == DeployEvent(
        workflow_name="billing",
        version_id="0123456",
        sha="0123456789abcdef0123456789abcdef01234567",
        environment="production",
        event_time=datetime(2024, 5, 1, 12, tzinfo=UTC),
        is_dark_deploy=True,
        is_non_migratory=False,
        github_deployment=GitHubDeploymentRef(repository="acme/orders", deployment_id=1),
    )
    wire = event.model_dump(mode="json", by_alias=True)
    assert wire["eventTime"] == "2024-05-01T12:00:00Z"
    assert wire["githubDeployment"] == {"repository": "acme/orders", "deploymentId": 1}


def test_the_original_payload_without_our_field_still_deploys() -> None:
    original = {
        "workflowName": "billing",
        "versionId": "0123456",
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "environment": "production",
        "eventTime": "2024-05-01T12:00:00Z",
    }
    assert DeployEvent.model_validate(original).github_deployment is None


@pytest.mark.parametrize(
    ("repository", "environment", "expected"),
    [
        ("acme/orders", "production", "orders"),
        ("ACME/orders", "production", "orders"),
        ("acme/orders", "staging", "ordersStaging"),
    ],
    ids=["by repository", "case-insensitive", "environment-specific entry wins"],
)
def test_without_workflow_name_the_repository_mapping_decides(repository: str, environment: str, expected: str) -> None:
    data = deployment_status(repository=repository, environment=environment)
    assert to_deploy_event(parse_deployment_status(data), REPOS).workflow_name == expected


def test_a_string_payload_is_parsed_and_defaults_are_false() -> None:
    data = deployment_status(payload=json.dumps({"workflowName": "billing", "isNonMigratory": True}))
    event = to_deploy_event(parse_deployment_status(data), REPOS)
    assert (event.workflow_name, event.is_non_migratory, event.is_dark_deploy) == ("billing", True, False)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["deployment"].pop("sha"), "deployment.sha"),
        (lambda d: d["deployment"].update(sha="not-hex"), "deployment.sha"),
        (lambda d: d.pop("repository"), "repository"),
        (lambda d: d["deployment_status"].pop("created_at"), "deployment_status.created_at"),
        (lambda d: d["deployment_status"].update(created_at="yesterday"), "deployment_status.created_at"),
        (lambda d: d["deployment"].pop("environment"), "deployment.environment"),
    ],
    ids=["no sha", "bad sha", "no repository", "no created_at", "bad created_at", "no environment"],
)
def test_missing_or_bad_fields_are_named(mutate: object, field: str) -> None:
    data = deployment_status()
    mutate(data)  # type: ignore[operator]
    with pytest.raises(PayloadError) as caught:
        parse_deployment_status(data)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("payload", "repository", "field"),
    [
        ({}, "acme/unknown", "deployment.payload.workflowName"),
        ({"workflowName": "bad.name"}, "acme/orders", "deployment.payload.workflowName"),
        ({"isDarkDeploy": "maybe"}, "acme/orders", "deployment.payload.isDarkDeploy"),
        ("[1, 2]", "acme/orders", "deployment.payload"),
    ],
    ids=["unmapped repository", "invalid workflow name", "non-boolean flag", "string payload not an object"],
)
def test_unmappable_deployments_are_refused_naming_the_field(payload: object, repository: str, field: str) -> None:
    data = deployment_status(payload=payload, repository=repository)
    with pytest.raises(PayloadError) as caught:
        to_deploy_event(parse_deployment_status(data), REPOS)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1]", "application/json"),
        (b"payload=%7B", "application/x-www-form-urlencoded"),
    ],
    ids=["malformed", "not an object", "bad form payload"],
)
def test_malformed_bodies_are_refused(body: bytes, content_type: str) -> None:
    with pytest.raises(PayloadError):
        parse_body(body, content_type)


def test_githubs_form_encoding_is_accepted() -> None:
    assert parse_body(b"payload=%7B%22zen%22%3A%22hi%22%7D", "application/x-www-form-urlencoded") == {"zen": "hi"}


# -- the receiver's rules, with a recording start function ----------------------------------------------------


class Starts:
    def __init__(self, fail: Exception | None = None) -> None:
        self.events: list[DeployEvent] = []
        self.fail = fail

    async def __call__(self, event: DeployEvent) -> str:
        if self.fail is not None:
            raise self.fail
        self.events.append(event)
        return f"run-{len(self.events)}"


def receiver(log: DeliveryLog, starts: Starts, *, secret: str | None = SECRET, dev: bool = False) -> GitHubReceiver:
    return GitHubReceiver(secret=secret, allow_unsigned=dev, repositories=REPOS, deliveries=log, start=starts)


@pytest.fixture
def log(tmp_path: Path) -> DeliveryLog:
    return DeliveryLog(tmp_path / "webhook.sqlite3")


async def test_a_redelivery_never_starts_twice_even_from_another_process(log: DeliveryLog, tmp_path: Path) -> None:
    starts = Starts()
    body, headers = signed(deployment_status(), delivery="d-1")
    first = await receiver(log, starts).receive(headers, body)
    other_process = DeliveryLog(tmp_path / "webhook.sqlite3")
    again = await receiver(other_process, starts).receive(headers, body)
    assert (first.action, again.action) == ("started", "duplicate")
    assert again.run_id == first.run_id == "run-1" and len(starts.events) == 1


async def test_concurrent_redeliveries_start_once(log: DeliveryLog) -> None:
    starts = Starts()
    body, headers = signed(deployment_status(), delivery="d-2")
    results = await asyncio.gather(*(receiver(log, starts).receive(headers, body) for _ in range(5)))
    assert sorted(r.action for r in results) == ["duplicate"] * 4 + ["started"]
    assert len(starts.events) == 1


async def test_a_failed_start_releases_the_delivery_for_githubs_retry(log: DeliveryLog) -> None:
    body, headers = signed(deployment_status(), delivery="d-3")
    with pytest.raises(BackendError):
        await receiver(log, Starts(fail=BackendError("Temporal is unavailable"))).receive(headers, body)
    starts = Starts()
    assert (await receiver(log, starts).receive(headers, body)).action == "started"
    assert len(starts.events) == 1


async def test_a_claim_left_by_a_crashed_process_expires(tmp_path: Path) -> None:
    crashed = DeliveryLog(tmp_path / "w.sqlite3", stale_after_s=0.0)
    await crashed.claim("d-4", "deployment_status", workflow_name="orders", version_id="0123456")
    starts = Starts()
    body, headers = signed(deployment_status(), delivery="d-4")
    assert (await receiver(crashed, starts).receive(headers, body)).action == "started"


async def test_nothing_is_recorded_before_the_signature_is_checked(log: DeliveryLog) -> None:
    starts = Starts()
    body, headers = signed(deployment_status(), delivery="d-5", secret="wrong")
    with pytest.raises(BadSignature):
        await receiver(log, starts).receive(headers, body)
    assert await log.get("d-5") is None and starts.events == []


async def test_without_a_secret_the_webhook_refuses_unless_in_dev(log: DeliveryLog) -> None:
    body, headers = signed(deployment_status(), delivery="d-6")
    with pytest.raises(WebhookDisabled):
        await receiver(log, Starts(), secret=None).receive(headers, body)
    with pytest.raises(WebhookDisabled):
        await receiver(log, Starts(), secret="").receive(headers, body)
    unsigned = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
    assert (await receiver(log, Starts(), secret=None, dev=True).receive(unsigned, body)).action == "started"


@pytest.mark.parametrize("state", ["pending", "queued", "in_progress", "failure", "error", "inactive", "waiting"])
async def test_other_states_are_recorded_and_ignored(log: DeliveryLog, state: str) -> None:
    starts = Starts()
    body, headers = signed(deployment_status(state=state), delivery=f"d-{state}")
    result = await receiver(log, starts).receive(headers, body)
    assert result.action == "ignored" and state in result.detail and starts.events == []
    recorded = await log.get(f"d-{state}")
    assert recorded is not None and recorded.outcome == "ignored"


async def test_ping_and_other_events(log: DeliveryLog) -> None:
    body, headers = signed({"zen": "Keep it logically awesome.", "hook_id": 1}, event="ping")
    assert (await receiver(log, Starts()).receive(headers, body)).action == "pong"
    body, headers = signed({"ref": "refs/heads/main"}, event="push", delivery="d-push")
    assert (await receiver(log, Starts()).receive(headers, body)).action == "ignored"


@pytest.mark.parametrize("header", ["X-GitHub-Event", "X-GitHub-Delivery"])
async def test_missing_headers_are_named(log: DeliveryLog, header: str) -> None:
    body, headers = signed(deployment_status())
    del headers[header]
    with pytest.raises(PayloadError) as caught:
        await receiver(log, Starts()).receive(headers, body)
    assert caught.value.field == header
