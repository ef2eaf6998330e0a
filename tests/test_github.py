"""GitHub deployment statuses: which status each notification becomes (pure), and the adapter against a proxy that
validates every request with GitHub's own OpenAPI description (tests/github_api.py)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr
from tests.github_api import EXPIRES_AT, GitHubApi, free_port

from diachronic import doctor
from diachronic.ci.activities import to_application_error
from diachronic.contracts import GitHubDeploymentRef
from diachronic.doctor import Finding
from diachronic.errors import ConfigError, GitHubError
from diachronic.github import AppAuth, GitHubDeployments, TokenAuth, status_for
from diachronic.github.client import failure_of
from diachronic.github.statuses import MAX_DESCRIPTION, DeploymentStatusBody
from diachronic.notify.events import Notification, NotificationKind, notification_id
from diachronic.settings import Settings

TOKEN = "ghp_SENTINEL-4c1e9b"
REF = GitHubDeploymentRef(repository="acme/orders", deployment_id=7)
STATUSES = "/repos/acme/orders/deployments/7/statuses"


def note(kind: NotificationKind, **fields: Any) -> Notification:
    values: dict[str, Any] = {
        "id": notification_id("orders", "v2@1", kind),
        "kind": kind,
        "workflow_name": "orders",
        "version_id": "v2",
        "from_version_id": "v1",
        "phase": "rolling_out",
        "at": datetime(2024, 5, 1, 12, tzinfo=UTC),
        "github": REF,
    }
    return Notification(**(values | fields))


def private_key() -> tuple[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem, key.public_key()


# ------------------------------------------------------------------------------------------------ pure mapping


@pytest.mark.parametrize(
    ("kind", "state"),
    [
        (NotificationKind.STARTED, "in_progress"),
        (NotificationKind.STEP_REACHED, "in_progress"),
        (NotificationKind.PAUSED, "in_progress"),
        (NotificationKind.RESUMED, "in_progress"),
        (NotificationKind.MIGRATION_DONE, "in_progress"),
        (NotificationKind.COMPLETED, "success"),
        (NotificationKind.FAILED, "failure"),
        (NotificationKind.ABORTED, "failure"),
        (NotificationKind.STOPPED, "error"),
        (NotificationKind.RETIRED, None),
    ],
    ids=lambda v: str(v),
)
def test_each_change_becomes_the_documented_github_state(kind: NotificationKind, state: str | None) -> None:
    status = status_for(note(kind))
    assert (status.state if status else None) == state


def test_what_is_told_after_the_deployment_ended_leaves_githubs_last_status_alone() -> None:
    """A cleanup runs after the deployment ended: its old queue draining must not follow ``success``."""
    assert status_for(note(NotificationKind.MIGRATION_DONE, phase="completed")) is None
    assert status_for(note(NotificationKind.MIGRATION_DONE, phase="stopped")) is None
    assert status_for(note(NotificationKind.MIGRATION_DONE, phase="migrating")) is not None


def test_in_progress_says_phase_and_share_of_new_starts() -> None:
    status = status_for(note(NotificationKind.STEP_REACHED, percent=30))
    assert status == DeploymentStatusBody(
        state="in_progress", description="rolling_out: step reached, 30% of new starts on v2"
    )


def test_a_failure_carries_its_typed_reason_clipped_to_githubs_limit() -> None:
    reason = "FlagStoreError: " + "the flag store is down " * 20
    status = status_for(note(NotificationKind.FAILED, phase="failed", reason=reason))
    assert status is not None
    assert status.description.startswith("failed: failed (FlagStoreError: the flag store is down")
    assert len(status.description) == MAX_DESCRIPTION and status.description.endswith("…")


def test_links_point_at_the_workflow_on_the_dashboard_when_it_is_configured() -> None:
    status = status_for(note(NotificationKind.COMPLETED, percent=100), "https://deploy.example.com/")
    assert status is not None
    assert status.log_url == status.environment_url == "https://deploy.example.com/#wf-orders"
    assert status_for(note(NotificationKind.COMPLETED)) == DeploymentStatusBody(
        state="success", description="rolling_out: completed"
    )


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("status", "headers", "body", "retryable", "after"),
    [
        (500, {}, {"message": "Server Error"}, True, None),
        (502, {"retry-after": "5"}, {}, True, 5.0),
        (429, {"retry-after": "30"}, {"message": "slow down"}, True, 30.0),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1100"}, {"message": "API rate limit"}, True, 100.0),
        (403, {}, {"message": "You have exceeded a secondary rate limit"}, True, 60.0),
        (403, {}, {"message": "Resource not accessible by integration"}, False, None),
        (401, {}, {"message": "Bad credentials"}, False, None),
        (404, {}, {"message": "Not Found"}, False, None),
        (422, {}, {"message": "Validation Failed", "errors": [{"code": "invalid", "field": "state"}]}, False, None),
    ],
    ids=["5xx", "502 retry-after", "429", "primary rate limit", "secondary rate limit", "403", "401", "404", "422"],
)
def test_answers_become_typed_errors_that_say_whether_and_when_to_retry(
    status: int, headers: dict[str, str], body: Any, retryable: bool, after: float | None
) -> None:
    error = failure_of(httpx.Response(status, headers=headers, json=body), "a status", now=1000.0)
    assert (error.retryable, error.retry_after_s, error.status) == (retryable, after, status)
    assert f"GitHub answered {status} for a status" in error.message


async def test_unreachable_github_is_retryable_and_no_message_names_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    github = GitHubDeployments(api_url=f"http://127.0.0.1:{free_port()}", auth=TokenAuth(SecretStr(TOKEN)))
    try:
        with pytest.raises(GitHubError) as raised:
            await github.create_status(REF, DeploymentStatusBody(state="success", description="done"))
    finally:
        await github.close()
    assert raised.value.retryable and raised.value.message.endswith("cannot connect (ConnectError)")
    assert TOKEN not in raised.value.message and all(TOKEN not in r.getMessage() for r in caplog.records)


async def test_enterprise_server_keeps_the_api_path_of_its_base_url() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": 9})

    github = GitHubDeployments(
        api_url="https://ghe.example.com/api/v3/",
        auth=TokenAuth(SecretStr(TOKEN)),
        transport=httpx.MockTransport(answer),
    )
    try:
        assert await github.create_status(REF, DeploymentStatusBody(state="success", description="done")) == 9
    finally:
        await github.close()
    assert str(seen[0].url) == "https://ghe.example.com/api/v3/repos/acme/orders/deployments/7/statuses"


# ------------------------------------------------------------------------------------------------ against GitHub's API


async def test_a_deployment_goes_from_in_progress_to_success_with_requests_github_accepts(github: GitHubApi) -> None:
    client = GitHubDeployments(api_url=github.url, auth=TokenAuth(SecretStr(TOKEN)))
    changes = [
        note(NotificationKind.STARTED, phase="preparing"),
        note(NotificationKind.STEP_REACHED, percent=50),
        note(NotificationKind.COMPLETED, phase="completed", percent=100),
    ]
    try:
        for change in changes:
            status = status_for(change, "https://deploy.example.com")
            assert status is not None
            assert await client.create_status(REF, status) > 0
    finally:
        await client.close()
    sent = github.recorder.statuses()
    assert [(r.method, r.path) for r in sent] == [("POST", STATUSES)] * 3
    assert [r.body for r in sent] == [
        {
            "state": "in_progress",
            "description": "preparing: started",
            "log_url": "https://deploy.example.com/#wf-orders",
            "environment_url": "https://deploy.example.com/#wf-orders",
        },
        {
            "state": "in_progress",
            "description": "rolling_out: step reached, 50% of new starts on v2",
            "log_url": "https://deploy.example.com/#wf-orders",
            "environment_url": "https://deploy.example.com/#wf-orders",
        },
        {
            "state": "success",
            "description": "completed: completed, 100% of new starts on v2",
            "log_url": "https://deploy.example.com/#wf-orders",
            "environment_url": "https://deploy.example.com/#wf-orders",
        },
    ]
    headers = sent[0].headers
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert headers["accept"] == "application/vnd.github+json"


async def test_a_failing_deployment_ends_in_failure_with_its_reason(github: GitHubApi) -> None:
    client = GitHubDeployments(api_url=github.url, auth=TokenAuth(SecretStr(TOKEN)))
    failed = note(NotificationKind.FAILED, phase="failed", reason="FlagStoreError: Unleash answered 503")
    try:
        status = status_for(failed)
        assert status is not None
        await client.create_status(REF, status)
    finally:
        await client.close()
    assert [r.body for r in github.recorder.statuses()] == [
        {"state": "failure", "description": "failed: failed (FlagStoreError: Unleash answered 503)"}
    ]


async def test_a_request_github_would_refuse_never_reaches_it_and_is_not_retried(github: GitHubApi) -> None:
    client = GitHubDeployments(api_url=github.url, auth=TokenAuth(SecretStr(TOKEN)))
    try:
        with pytest.raises(GitHubError) as raised:
            await client.request(
                "POST", STATUSES, authorization=f"Bearer {TOKEN}", what="a status", json={"state": "x"}
            )
    finally:
        await client.close()
    assert (raised.value.status, raised.value.retryable) == (422, False)
    assert github.recorder.statuses() == []


async def test_a_github_app_mints_one_installation_token_and_reuses_it(github: GitHubApi) -> None:
    pem, public = private_key()
    client = GitHubDeployments(api_url=github.url, auth=AppAuth("Iv1.abc123", SecretStr(pem)))
    try:
        for kind in (NotificationKind.STARTED, NotificationKind.COMPLETED):
            status = status_for(note(kind))
            assert status is not None
            await client.create_status(REF, status)
    finally:
        await client.close()
    requests = [r for r in github.recorder.requests if r.path != "/meta"]
    assert [(r.method, r.path) for r in requests] == [
        ("GET", "/repos/acme/orders/installation"),
        ("POST", "/app/installations/4242/access_tokens"),
        ("POST", STATUSES),
        ("POST", STATUSES),
    ]
    for request in requests[:2]:
        claims = jwt.decode(request.headers["authorization"].removeprefix("Bearer "), public, algorithms=["RS256"])
        assert claims["iss"] == "Iv1.abc123" and 0 < claims["exp"] - claims["iat"] <= 600
    assert {r.headers["authorization"] for r in requests[2:]} == {"Bearer ghs_installation1"}


async def test_an_installation_token_is_renewed_before_it_expires(github: GitHubApi) -> None:
    pem, _ = private_key()
    expires = datetime.fromisoformat(EXPIRES_AT.replace("Z", "+00:00")).timestamp()
    now = [time.time()]
    client = GitHubDeployments(
        api_url=github.url, auth=AppAuth("42", SecretStr(pem), installation_id=77, clock=lambda: now[0])
    )
    status = DeploymentStatusBody(state="in_progress", description="rolling_out")
    try:
        await client.create_status(REF, status)
        now[0] = expires - 60  # a minute left: too little to start a request with
        await client.create_status(REF, status)
    finally:
        await client.close()
    paths = [r.path for r in github.recorder.requests if r.path != "/meta"]
    assert paths == ["/app/installations/77/access_tokens", STATUSES] * 2


async def test_a_refused_cached_token_is_dropped_so_the_retry_gets_a_new_one(github: GitHubApi) -> None:
    pem, _ = private_key()
    client = GitHubDeployments(api_url=github.url, auth=AppAuth("42", SecretStr(pem), installation_id=77))
    status = DeploymentStatusBody(state="in_progress", description="rolling_out")
    try:
        await client.create_status(REF, status)
        github.recorder.answer_next(
            lambda r: r.path == STATUSES, (401, {}, {"message": "Bad credentials", "documentation_url": "x"})
        )
        with pytest.raises(GitHubError) as raised:
            await client.create_status(REF, status)
        assert raised.value.retryable  # the token was revoked: a new one may work
        await client.create_status(REF, status)
    finally:
        await client.close()
    tokens = [r.headers["authorization"] for r in github.recorder.statuses()]
    assert tokens == ["Bearer ghs_installation1", "Bearer ghs_installation1", "Bearer ghs_installation2"]


async def test_a_token_github_refuses_is_not_retried(github: GitHubApi) -> None:
    client = GitHubDeployments(api_url=github.url, auth=TokenAuth(SecretStr(TOKEN)))
    github.recorder.answer_next(lambda r: True, (401, {}, {"message": "Bad credentials", "documentation_url": "x"}))
    try:
        with pytest.raises(GitHubError) as raised:
            await client.create_status(REF, DeploymentStatusBody(state="success", description="done"))
    finally:
        await client.close()
    assert not raised.value.retryable and "DIACHRONIC_GITHUB_TOKEN" in raised.value.message
    assert TOKEN not in raised.value.message


async def test_the_check_says_which_credentials_github_accepted(github: GitHubApi) -> None:
    pem, _ = private_key()
    token = GitHubDeployments(api_url=github.url, auth=TokenAuth(SecretStr(TOKEN)))
    app = GitHubDeployments(api_url=github.url, auth=AppAuth("42", SecretStr(pem)))
    try:
        assert await token.check() == f"token accepted by {github.url}; 4999 of 5000 requests left"
        assert await app.check() == f"GitHub App diachronic-test accepted by {github.url}"
    finally:
        await token.close()
        await app.close()


# ------------------------------------------------------------------------------------------------ settings


def test_settings_choose_the_token_or_the_app_or_nothing(tmp_path: Path) -> None:
    assert GitHubDeployments.from_settings(Settings(data_dir=tmp_path)) is None
    pem, _ = private_key()
    key_file = tmp_path / "app.pem"
    key_file.write_text(pem)
    for settings, auth in (
        (Settings(github_token=TOKEN), TokenAuth),
        (Settings(github_app_id="42", github_app_private_key_file=key_file), AppAuth),
        (Settings(github_app_id="42", github_app_private_key=pem), AppAuth),
    ):
        client = GitHubDeployments.from_settings(settings)
        assert client is not None and isinstance(client._auth, auth)


def test_a_key_that_is_not_a_private_key_is_a_config_error_that_does_not_show_it() -> None:
    with pytest.raises(ConfigError) as raised:
        GitHubDeployments.from_settings(Settings(github_app_id="42", github_app_private_key="SENTINEL-not-a-key"))
    assert "not a PEM private key" in raised.value.message and "SENTINEL" not in raised.value.message


@pytest.mark.parametrize(
    "values",
    [
        {"github_token": TOKEN, "github_app_id": "42", "github_app_private_key": "k"},
        {"github_app_id": "42"},
        {"github_app_private_key": "k"},
        {"github_app_id": "42", "github_app_private_key": "k", "github_app_private_key_file": "/k.pem"},
    ],
    ids=["token and app", "app without key", "key without app", "key twice"],
)
def test_inconsistent_github_credentials_are_refused_without_showing_them(values: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as raised:
        Settings(**values)
    assert "DIACHRONIC_GITHUB" in str(raised.value) and TOKEN not in str(raised.value)


def test_the_wait_github_asks_for_becomes_the_next_retrys_delay() -> None:
    error = to_application_error(GitHubError("rate limited", retry_after_s=30.0))
    assert (error.type, error.non_retryable, error.next_retry_delay) == ("GitHubError", False, timedelta(seconds=30))
    assert to_application_error(GitHubError("down")).next_retry_delay is None


async def test_doctor_says_whether_github_accepts_the_credentials(github: GitHubApi) -> None:
    assert await doctor.github(Settings()) == [
        Finding(
            check="github",
            ok=True,
            detail="not configured: deployments from GitHub get no deployment statuses "
            "(set DIACHRONIC_GITHUB_TOKEN or a GitHub App to report them)",
        )
    ]
    accepted = await doctor.github(Settings(github_token=TOKEN, github_api_url=github.url))
    assert accepted == [
        Finding(check="github", ok=True, detail=f"token accepted by {github.url}; 4999 of 5000 requests left")
    ]
    github.recorder.answer_next(lambda r: True, (401, {}, {"message": "Bad credentials", "documentation_url": "x"}))
    [refused] = await doctor.github(Settings(github_token=TOKEN, github_api_url=github.url))
    assert not refused.ok and "GitHub answered 401" in refused.detail and TOKEN not in refused.detail
