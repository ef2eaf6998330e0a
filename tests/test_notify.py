"""Notifications: each sink against a local receiver, failures typed for Temporal's retries, no secret in any
message or log line, and the activity that delivers at-least-once (heartbeat progress: a retry skips the sinks
that already took it)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from tests.github_api import GitHubApi, free_port
from tests.notify_receiver import receiver
from tests.pipeline_workflows import OutboxRun, OutboxWorkflow, PublishWorkflow

from diachronic.contracts import GitHubDeploymentRef
from diachronic.errors import ConfigError, NotificationError
from diachronic.github import GitHubDeployments, TokenAuth
from diachronic.notify.activities import NotifyActivities, PublishResult
from diachronic.notify.events import Notification, NotificationKind, notification_id, summary
from diachronic.notify.sinks import AppriseSink, JsonWebhookSink, SlackSink, open_sinks
from diachronic.settings import Settings

SLACK_SECRET = "T0SENTINEL/B0SENTINEL/xoxSENTINEL9f"
SIGNING_SECRET = "sign-SENTINEL-3b7"
SECRETS = (SLACK_SECRET, SIGNING_SECRET, "SENTINEL")


def note(kind: NotificationKind = NotificationKind.STEP_REACHED, **fields: Any) -> Notification:
    values: dict[str, Any] = {
        "id": notification_id("orders", "v2@2024-05-01T12:00:00Z", kind, "30"),
        "kind": kind,
        "workflow_name": "orders",
        "version_id": "v2",
        "from_version_id": "v1",
        "phase": "rolling_out",
        "percent": 30,
        "at": datetime(2024, 5, 1, 12, tzinfo=UTC),
    }
    return Notification(**(values | fields))


def ours(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every log line but the receiver's own (uvicorn logs the paths it serves: it is the other side)."""
    return [r.getMessage() for r in caplog.records if not r.name.startswith("uvicorn")]


def no_secret_in(texts: list[str]) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked: {text}"


def test_ids_are_stable_and_tell_changes_apart() -> None:
    a = notification_id("orders", "v2@t", NotificationKind.STEP_REACHED, "30")
    assert a == notification_id("orders", "v2@t", NotificationKind.STEP_REACHED, "30")
    assert uuid.UUID(a).version == 5
    others = {
        notification_id("orders", "v2@t", NotificationKind.STEP_REACHED, "40"),
        notification_id("orders", "v2@u", NotificationKind.STEP_REACHED, "30"),
        notification_id("orders", "v2@t", NotificationKind.PAUSED, "30"),
        notification_id("billing", "v2@t", NotificationKind.STEP_REACHED, "30"),
    }
    assert a not in others and len(others) == 4


@pytest.mark.parametrize(
    ("kind", "fields", "text"),
    [
        (NotificationKind.STEP_REACHED, {}, "orders v1 -> v2: rollout step reached (30 % of new starts)"),
        (NotificationKind.STARTED, {"from_version_id": None, "percent": None}, "orders v2: deployment started"),
        (
            NotificationKind.FAILED,
            {"reason": "FlagStoreError: down"},
            "orders v1 -> v2: deployment failed (30 % of new starts): FlagStoreError: down",
        ),
        (NotificationKind.RETIRED, {"percent": 100}, "orders v1 -> v2: old version retired"),
    ],
    ids=["step", "initial", "failed", "retired"],
)
def test_summary_is_one_line_a_person_reads(kind: NotificationKind, fields: dict[str, Any], text: str) -> None:
    assert summary(note(kind, **fields)) == text


async def test_the_json_webhook_gets_the_notification_its_id_and_a_signature() -> None:
    async with receiver() as box:
        sink = JsonWebhookSink(SecretStr(f"{box.url}/hook?key=SENTINEL"), secret=SecretStr(SIGNING_SECRET))
        try:
            await sink.send(note())
        finally:
            await sink.close()
    (got,) = box.at("/hook")
    assert got.json == note().model_dump(mode="json", by_alias=True)
    assert got.json["workflowName"] == "orders" and got.json["id"] == note().id
    assert got.headers["x-diachronic-notification-id"] == note().id
    assert got.headers["x-diachronic-event"] == "step_reached"
    expected = "sha256=" + hmac.new(SIGNING_SECRET.encode(), got.raw, hashlib.sha256).hexdigest()
    assert got.headers["x-diachronic-signature-256"] == expected


async def test_slack_gets_text_and_blocks_with_the_id() -> None:
    async with receiver() as box:
        sink = SlackSink(SecretStr(f"{box.url}/services/{SLACK_SECRET}"))
        try:
            await sink.send(note(NotificationKind.COMPLETED, phase="completed", percent=100))
        finally:
            await sink.close()
    (got,) = box.at(f"/services/{SLACK_SECRET}")
    assert got.json["text"] == ":white_check_mark: orders v1 -> v2: deployment completed (100 % of new starts)"
    assert got.json["blocks"][1]["elements"][0]["text"].endswith(f"id {note(NotificationKind.COMPLETED).id}")


async def test_apprise_delivers_through_any_of_its_services() -> None:
    async with receiver() as box:
        sink = AppriseSink(SecretStr(box.url.replace("http://", "json://") + "/apprise"))
        await sink.send(note(NotificationKind.FAILED, reason="FlagStoreError: down"))
    (got,) = box.at("/apprise")
    assert got.json["title"] == "diachronic: orders failed"
    assert got.json["message"].startswith("orders v1 -> v2: deployment failed")
    assert f"id {note(NotificationKind.FAILED).id}" in got.json["message"]
    assert got.json["type"] == "failure"


@pytest.mark.parametrize(
    ("status", "headers", "retryable", "after"),
    [(503, {}, True, None), (429, {"Retry-After": "12"}, True, 12.0), (404, {}, False, None), (400, {}, False, None)],
    ids=["503", "429", "404", "400"],
)
async def test_a_refusal_is_typed_for_temporals_retries_and_names_no_secret(
    status: int, headers: dict[str, str], retryable: bool, after: float | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with receiver() as box:
        box.fail(f"/services/{SLACK_SECRET}", (status, headers))
        sink = SlackSink(SecretStr(f"{box.url}/services/{SLACK_SECRET}"))
        try:
            with pytest.raises(NotificationError) as raised:
                await sink.send(note())
        finally:
            await sink.close()
    assert (raised.value.retryable, raised.value.retry_after_s) == (retryable, after)
    assert raised.value.message == f"slack: the receiver answered {status}"
    no_secret_in([raised.value.message, *ours(caplog)])


async def test_unreachable_sinks_are_retryable_and_name_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    closed = f"127.0.0.1:{free_port()}"
    sinks = [
        SlackSink(SecretStr(f"http://{closed}/services/{SLACK_SECRET}")),
        JsonWebhookSink(SecretStr(f"http://{closed}/hook?token=SENTINEL")),
        AppriseSink(SecretStr(f"json://user:SENTINEL@{closed}/x")),
    ]
    messages = []
    for sink in sinks:
        with pytest.raises(NotificationError) as raised:
            await sink.send(note())
        await sink.close()
        assert raised.value.retryable
        messages.append(raised.value.message)
    assert messages[0] == "slack: cannot connect (ConnectError)"
    no_secret_in([*messages, *ours(caplog)])


def test_sinks_come_from_settings_and_a_bad_apprise_url_is_refused_without_showing_it(tmp_path: Path) -> None:
    assert open_sinks(Settings(data_dir=tmp_path)) == []
    sinks = open_sinks(
        Settings(
            notify_webhook_url="https://hooks.example.com/a",
            notify_slack_url=f"https://hooks.slack.com/services/{SLACK_SECRET}",
            notify_apprise_urls="json://a.example.com/x  mailto://u:p@example.com",
        )
    )
    assert [(s.name, s.kind) for s in sinks] == [
        ("webhook", "webhook"),
        ("slack", "slack"),
        ("apprise-1", "apprise"),
        ("apprise-2", "apprise"),
    ]
    with pytest.raises(ConfigError) as raised:
        open_sinks(Settings(notify_apprise_urls="nosuchservice://SENTINEL"))
    assert raised.value.message.startswith("apprise-1: apprise does not understand this URL")
    no_secret_in([raised.value.message])


def test_a_sink_url_that_is_not_http_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError) as raised:
        Settings(notify_slack_url=f"hooks.slack.com/services/{SLACK_SECRET}")
    assert "notify_slack_url" in str(raised.value)
    no_secret_in([str(raised.value)])


# ------------------------------------------------------------------------------------------------ the activity


async def publish(env: WorkflowEnvironment, activities: NotifyActivities, notification: Notification) -> PublishResult:
    """Publish as the CI does (one activity, Temporal's retries), then close the sinks."""
    queue = f"notify-{uuid.uuid4()}"
    try:
        async with Worker(
            env.client, task_queue=queue, workflows=[PublishWorkflow], activities=[activities.publish_notification]
        ):
            return await env.client.execute_workflow(
                PublishWorkflow.run,
                notification,
                id=f"publish-{uuid.uuid4()}",
                task_queue=queue,
                result_type=PublishResult,
            )
    finally:
        await activities.close()


async def test_delivery_is_at_least_once_and_a_retry_skips_the_sinks_that_took_it(
    time_env: WorkflowEnvironment, github: GitHubApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ref = GitHubDeploymentRef(repository="acme/orders", deployment_id=7)
    notification = note(NotificationKind.COMPLETED, phase="completed", percent=100, github=ref)
    async with receiver() as box:
        box.fail("/hook", (503, {}), (502, {}))  # the webhook is down for two attempts
        activities = NotifyActivities(
            [
                JsonWebhookSink(SecretStr(f"{box.url}/hook")),
                SlackSink(SecretStr(f"{box.url}/services/{SLACK_SECRET}")),
                AppriseSink(SecretStr(box.url.replace("http://", "json://") + "/gone"), name="apprise-1"),
            ],
            GitHubDeployments(api_url=github.url, auth=TokenAuth(SecretStr("ghp_SENTINEL"))),
            "https://deploy.example.com",
        )
        box.fail("/gone", (404, {}))  # apprise cannot tell lasting failures: it is retried too, and then works
        result = await publish(time_env, activities, notification)
    assert sorted(result.delivered) == ["apprise-1", "github", "slack", "webhook"] and result.refused == {}
    assert len(box.at("/hook")) == 3  # two refusals, then delivered
    assert len(box.at(f"/services/{SLACK_SECRET}")) == 1  # took it on the first attempt: never sent again
    assert len(box.at("/gone")) == 2
    assert {r.json["id"] for r in box.at("/hook")} == {notification.id}
    assert [r.body["state"] for r in github.recorder.statuses()] == ["success"]
    no_secret_in(ours(caplog))


async def test_a_sink_that_refuses_for_good_is_reported_and_never_blocks(
    time_env: WorkflowEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    async with receiver() as box:
        box.fail("/hook", (410, {}))
        activities = NotifyActivities(
            [JsonWebhookSink(SecretStr(f"{box.url}/hook")), SlackSink(SecretStr(f"{box.url}/slack"))], None, None
        )
        result = await publish(
            time_env, activities, note(github=GitHubDeploymentRef(repository="a/b", deployment_id=1))
        )
    assert result == PublishResult(delivered=["slack"], refused={"webhook": "webhook: the receiver answered 410"})
    assert any("no GitHub credentials are set" in r.getMessage() for r in caplog.records)
    assert len(box.at("/hook")) == 1


# ------------------------------------------------------------------------------------------------ the outbox


KINDS = [NotificationKind.STARTED, NotificationKind.STEP_REACHED, NotificationKind.COMPLETED]
CHANGES = [note(kind, id=notification_id("orders", "v2@t", kind)) for kind in KINDS]


async def run_outbox(env: WorkflowEnvironment, hook: str, run: OutboxRun) -> str:
    """Run ``OutboxWorkflow`` with a JSON webhook sink at ``hook``; returns the workflow id."""
    activities = NotifyActivities([JsonWebhookSink(SecretStr(hook))], None, None)
    queue, workflow_id = f"outbox-{uuid.uuid4()}", f"outbox-{uuid.uuid4()}"
    try:
        async with Worker(
            env.client, task_queue=queue, workflows=[OutboxWorkflow], activities=[activities.publish_notification]
        ):
            await env.client.execute_workflow(OutboxWorkflow.run, run, id=workflow_id, task_queue=queue)
    finally:
        await activities.close()
    return workflow_id


async def test_the_outbox_publishes_in_order_through_outages_starting_with_what_was_handed_over(
    time_env: WorkflowEnvironment,
) -> None:
    async with receiver() as box:
        box.fail("/hook", (503, {}), (503, {}))  # down when the first one goes out
        await run_outbox(time_env, f"{box.url}/hook", OutboxRun(pending=CHANGES[:1], add=CHANGES[1:]))
    delivered = [r.json["kind"] for r in box.at("/hook")]
    # The one handed over first (retried through the outage), each one after the one before it, each once it took.
    assert delivered == ["started"] * 3 + ["step_reached", "completed"]


async def test_the_outbox_settles_before_a_hand_over_and_the_next_run_publishes_the_rest(
    time_env: WorkflowEnvironment,
) -> None:
    async with receiver() as box:
        workflow_id = await run_outbox(time_env, f"{box.url}/hook", OutboxRun(add=CHANGES, hand_over=True))
        handle = time_env.client.get_workflow_handle(workflow_id)
        first_run = (await handle.describe()).raw_description.workflow_execution_info.first_run_id
        history = await time_env.client.get_workflow_handle(workflow_id, run_id=first_run).fetch_history()
    assert [r.json["kind"] for r in box.at("/hook")] == [k.value for k in KINDS]
    scheduled = [e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")]
    closed = [e for e in history.events if e.HasField("activity_task_completed_event_attributes")]
    assert len(scheduled) == len(closed)  # whatever was in flight ended before the hand-over: none left behind
