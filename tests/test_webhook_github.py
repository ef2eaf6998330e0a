"""The webhook's pure parts and its rules, without a server: signature, payload mapping, receiver."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from tests.http_helpers import SECRET, deployment_status, signed

from diachronic.contracts import DeployEvent, GitHubDeploymentRef
from diachronic.errors import BackendError
from diachronic.webhook import (
    BadSignature,
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
    event = to_deploy_event(parse_deployment_status(data), REPOS, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert event == DeployEvent(
        workflow_name="billing",
        version_id="0123456",
        sha="0123456789abcdef0123456789abcdef01234567",
        environment="production",
        event_time=datetime(2024, 5, 1, 12, tzinfo=UTC),
        is_dark_deploy=True,
        is_non_migratory=False,
        github_deployment=GitHubDeploymentRef(repository="acme/orders", deployment_id=1),
        delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
    )
    wire = event.model_dump(mode="json", by_alias=True)
    assert wire["eventTime"] == "2024-05-01T12:00:00Z"
    assert wire["githubDeployment"] == {"repository": "acme/orders", "deploymentId": 1}
    assert wire["deliveryId"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"


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


class Sends:
    """The CI's deploy signal, recorded: the receiver keeps no state, so what it sends is all there is to check."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.events: list[DeployEvent] = []
        self.fail = fail

    async def __call__(self, event: DeployEvent) -> None:
        if self.fail is not None:
            raise self.fail
        self.events.append(event)


def receiver(sends: Sends, *, secret: str | None = SECRET, dev: bool = False) -> GitHubReceiver:
    return GitHubReceiver(secret=secret, allow_unsigned=dev, repositories=REPOS, send=sends)


async def test_the_deploy_event_carries_the_delivery_id_the_ci_recognises_a_redelivery_by() -> None:
    """The receiver remembers nothing: a redelivery, to any replica, is sent again with the same delivery id."""
    sends = Sends()
    body, headers = signed(deployment_status(), delivery="d-1")
    first = await receiver(sends).receive(headers, body)
    again = await receiver(sends).receive(headers, body)
    assert [e.delivery_id for e in sends.events] == ["d-1", "d-1"] and sends.events[0] == sends.events[1]
    assert first == again and first.action == "started" and first.workflow_id == "ci.orders"
    assert first.deploy_event == sends.events[0]


async def test_a_failed_send_is_an_error_for_githubs_retry() -> None:
    body, headers = signed(deployment_status(), delivery="d-3")
    with pytest.raises(BackendError):
        await receiver(Sends(fail=BackendError("Temporal is unavailable"))).receive(headers, body)
    sends = Sends()
    assert (await receiver(sends).receive(headers, body)).action == "started"
    assert len(sends.events) == 1


async def test_nothing_is_sent_before_the_signature_is_checked() -> None:
    sends = Sends()
    body, headers = signed(deployment_status(), delivery="d-5", secret="wrong")
    with pytest.raises(BadSignature):
        await receiver(sends).receive(headers, body)
    assert sends.events == []


async def test_without_a_secret_the_webhook_refuses_unless_in_dev() -> None:
    body, headers = signed(deployment_status(), delivery="d-6")
    with pytest.raises(WebhookDisabled):
        await receiver(Sends(), secret=None).receive(headers, body)
    with pytest.raises(WebhookDisabled):
        await receiver(Sends(), secret="").receive(headers, body)
    unsigned = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
    assert (await receiver(Sends(), secret=None, dev=True).receive(unsigned, body)).action == "started"


@pytest.mark.parametrize("state", ["pending", "queued", "in_progress", "failure", "error", "inactive", "waiting"])
async def test_other_states_are_ignored(state: str) -> None:
    sends = Sends()
    body, headers = signed(deployment_status(state=state), delivery=f"d-{state}")
    result = await receiver(sends).receive(headers, body)
    assert result.action == "ignored" and state in result.detail and sends.events == []


async def test_ping_and_other_events() -> None:
    body, headers = signed({"zen": "Keep it logically awesome.", "hook_id": 1}, event="ping")
    assert (await receiver(Sends()).receive(headers, body)).action == "pong"
    body, headers = signed({"ref": "refs/heads/main"}, event="push", delivery="d-push")
    assert (await receiver(Sends()).receive(headers, body)).action == "ignored"


@pytest.mark.parametrize("header", ["X-GitHub-Event", "X-GitHub-Delivery"])
async def test_missing_headers_are_named(header: str) -> None:
    body, headers = signed(deployment_status())
    del headers[header]
    with pytest.raises(PayloadError) as caught:
        await receiver(Sends()).receive(headers, body)
    assert caught.value.field == header
