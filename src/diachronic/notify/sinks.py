"""Notification sinks: a generic JSON webhook, a Slack-compatible incoming webhook, and every service apprise
knows (e-mail, Microsoft Teams, Discord, Telegram, ntfy, ...).

A sink sends one notification and raises ``NotificationError`` when it could not: retryable when trying again
can help (the network, a timeout, 429, 5xx), not otherwise (a URL that does not exist, a refused payload). There is
no retry loop here: Temporal retries the activity (``diachronic.notify.activities``). The URLs carry credentials
(Slack's is a secret in itself): no message, log line or error names them; a sink is named by its kind.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from diachronic.errors import ConfigError, NotificationError, http_status_retryable
from diachronic.notify.events import Notification, NotificationKind, summary
from diachronic.outbound import hide_in_logs, retry_after, unreachable
from diachronic.settings import Settings

__all__ = [
    "SIGNATURE_HEADER",
    "AppriseSink",
    "JsonWebhookSink",
    "Sink",
    "SlackSink",
    "open_sinks",
    "signature",
]

SIGNATURE_HEADER = "X-Diachronic-Signature-256"
EVENT_HEADER = "X-Diachronic-Event"
ID_HEADER = "X-Diachronic-Notification-Id"

# apprise logs the URLs it posts to, credentials included: its own log lines are off; failures are ours to report.
logging.getLogger("apprise").disabled = True


class Sink(Protocol):
    """Where notifications go. ``name`` is unique among the configured sinks; ``kind`` is what it is."""

    name: str
    kind: str

    async def send(self, notification: Notification) -> None: ...

    async def close(self) -> None: ...


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the body>``, as GitHub signs its webhooks: receivers can reuse their check."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _HttpSink:
    """A sink that POSTs to one URL; the one place where its failures become ``NotificationError``."""

    kind = "http"

    def __init__(self, name: str, url: SecretStr, *, timeout_s: float, transport: httpx.AsyncBaseTransport | None):
        self.name = name
        self._url = url.get_secret_value()
        hide_in_logs(self._url)
        self._http = httpx.AsyncClient(timeout=timeout_s, transport=transport, headers={"User-Agent": "diachronic"})

    async def _post(self, body: bytes, headers: dict[str, str]) -> None:
        with unreachable(lambda problem, retry: NotificationError(f"{self.name}: {problem}", retryable=retry)):
            response = await self._http.post(
                self._url, content=body, headers={"Content-Type": "application/json", **headers}
            )
        if response.status_code >= 300:
            status = response.status_code
            raise NotificationError(
                f"{self.name}: the receiver answered {status}",
                retryable=http_status_retryable(status),
                retry_after_s=retry_after(response, now=time.time()),
            )

    async def close(self) -> None:
        await self._http.aclose()


class JsonWebhookSink(_HttpSink):
    """POSTs the notification as JSON, with its id and kind in headers and, given a secret, a signature."""

    kind = "webhook"

    def __init__(
        self,
        url: SecretStr,
        *,
        secret: SecretStr | None = None,
        name: str = "webhook",
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, url, timeout_s=timeout_s, transport=transport)
        self._secret = secret.get_secret_value() if secret else None

    async def send(self, notification: Notification) -> None:
        body = notification.model_dump_json(by_alias=True).encode()
        headers = {EVENT_HEADER: notification.kind.value, ID_HEADER: notification.id}
        if self._secret:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        await self._post(body, headers)


_SLACK_EMOJI = {
    NotificationKind.COMPLETED: ":white_check_mark:",
    NotificationKind.FAILED: ":x:",
    NotificationKind.ABORTED: ":rotating_light:",
    NotificationKind.STOPPED: ":octagonal_sign:",
}


def slack_message(notification: Notification) -> dict[str, Any]:
    """Slack's incoming-webhook body: ``text`` (what Mattermost and other Slack-compatible receivers read) and
    blocks that also show the notification's id."""
    text = f"{_SLACK_EMOJI.get(notification.kind, ':arrows_counterclockwise:')} {summary(notification)}"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "plain_text", "text": text[:3000], "emoji": True}},
            {
                "type": "context",
                "elements": [{"type": "plain_text", "text": f"{notification.kind.value} · id {notification.id}"}],
            },
        ],
    }


class SlackSink(_HttpSink):
    """A Slack (or Slack-compatible: Mattermost, Rocket.Chat) incoming webhook; its URL is the credential."""

    kind = "slack"

    def __init__(
        self,
        url: SecretStr,
        *,
        name: str = "slack",
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, url, timeout_s=timeout_s, transport=transport)

    async def send(self, notification: Notification) -> None:
        await self._post(json.dumps(slack_message(notification)).encode(), {})


_APPRISE_TYPES = {
    NotificationKind.COMPLETED: "success",
    NotificationKind.FAILED: "failure",
    NotificationKind.ABORTED: "failure",
    NotificationKind.STOPPED: "warning",
}


class AppriseSink:
    """One apprise URL (``mailto://``, ``msteams://``, ``ntfy://``, ``json://``...): apprise does the sending.
    apprise cannot say whether a failure is lasting, so every failure is retried."""

    kind = "apprise"

    def __init__(self, url: SecretStr, *, name: str = "apprise", timeout_s: float = 10.0) -> None:
        import apprise  # loaded only when an apprise sink is configured

        self.name = name
        self._timeout_s = timeout_s
        self._apprise = apprise.Apprise()
        if not self._apprise.add(url.get_secret_value()):
            raise ConfigError(f"{name}: apprise does not understand this URL (the URL is a secret: not shown)")

    async def send(self, notification: Notification) -> None:
        result = await self._apprise.async_notify(
            body=summary(notification) + f"\n\nid {notification.id}",
            title=f"diachronic: {notification.workflow_name} {notification.kind.value}",
            notify_type=_APPRISE_TYPES.get(notification.kind, "info"),
            timeout=self._timeout_s,
        )
        if not result:
            raise NotificationError(f"{self.name}: apprise could not deliver ({result.status.name.lower()})")

    async def close(self) -> None:
        """Nothing to close: apprise opens its connections per delivery."""


def open_sinks(settings: Settings) -> list[Sink]:
    """The configured sinks (none when no ``DIACHRONIC_NOTIFY_*`` URL is set)."""
    sinks: list[Sink] = []
    timeout = settings.notify_timeout_s
    if settings.notify_webhook_url is not None:
        sinks.append(
            JsonWebhookSink(settings.notify_webhook_url, secret=settings.notify_webhook_secret, timeout_s=timeout)
        )
    if settings.notify_slack_url is not None:
        sinks.append(SlackSink(settings.notify_slack_url, timeout_s=timeout))
    urls = settings.notify_apprise_urls.get_secret_value().split() if settings.notify_apprise_urls else []
    for index, url in enumerate(urls, start=1):
        sinks.append(AppriseSink(SecretStr(url), name=f"apprise-{index}", timeout_s=timeout))
    return sinks
