"""Notifications: what the CI tells people and systems as a deployment goes (docs/pipeline.md).

``Notification`` is one change (started, step reached, paused, resumed, stopped, aborted, migration done, retired,
completed, failed) with an id receivers de-duplicate on; sinks deliver it (JSON webhook, Slack, apprise); the
``publish_notification`` activity delivers it at-least-once to every sink and, for a deployment that came from
GitHub, as a GitHub deployment status.
"""

from __future__ import annotations

from diachronic.notify.events import Notification, NotificationKind, notification_id, summary
from diachronic.notify.sinks import AppriseSink, JsonWebhookSink, Sink, SlackSink, open_sinks

__all__ = [
    "AppriseSink",
    "JsonWebhookSink",
    "Notification",
    "NotificationKind",
    "Sink",
    "SlackSink",
    "notification_id",
    "open_sinks",
    "summary",
]
