"""The activity that tells the outside world: ``publish_notification`` delivers one notification to every
configured sink and, for a deployment that came from GitHub, as a status on that GitHub deployment.

At-least-once, with Temporal's retries and back-off: a target that failed in a way a retry can help makes the
attempt fail (retryable) after every other target was tried; the targets that already took the notification are
remembered in the attempt's heartbeat details, so a retry sends only to the others. A target that refuses it for
good (a 404 webhook, a deployment GitHub does not know) is reported in the result and not retried: a
notification never blocks a deployment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from pydantic import Field
from temporalio import activity

from diachronic.ci.activities import translate_errors
from diachronic.contracts import Contract
from diachronic.errors import DiachronicError, NotificationError
from diachronic.github.client import GitHubDeployments
from diachronic.github.statuses import status_for
from diachronic.metrics import NOTIFICATIONS
from diachronic.notify.events import Notification
from diachronic.notify.sinks import Sink, open_sinks
from diachronic.settings import Settings

__all__ = ["GITHUB_TARGET", "NotifyActivities", "PublishResult"]

GITHUB_TARGET = "github"


class PublishResult(Contract):
    delivered: list[str] = Field(description="targets that took the notification, in this attempt or an earlier one")
    refused: dict[str, str] = Field(default_factory=dict, description="target -> why, for targets that refused it")


class NotifyActivities:
    """Bound to the configured sinks, GitHub (None: statuses are not reported) and the dashboard's address.
    Each activity's name is its method's name, listed in ``NAMES`` (as ``CIActivities``)."""

    NAMES: ClassVar[tuple[str, ...]] = ("publish_notification",)

    def __init__(self, sinks: list[Sink], github: GitHubDeployments | None, dashboard_url: str | None) -> None:
        names = [sink.name for sink in sinks]
        if len(set(names)) != len(names) or GITHUB_TARGET in names:
            raise ValueError(f"sink names must be unique and not {GITHUB_TARGET!r}: {names}")
        self.sinks = sinks
        self.github = github
        self.dashboard_url = dashboard_url

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifyActivities:
        return cls(open_sinks(settings), GitHubDeployments.from_settings(settings), settings.dashboard_url)

    def _targets(self, notification: Notification) -> dict[str, tuple[str, Callable[[], Awaitable[object]]]]:
        """name -> (kind, send) for every target this notification goes to."""
        targets: dict[str, tuple[str, Callable[[], Awaitable[object]]]] = {
            sink.name: (sink.kind, lambda sink=sink: sink.send(notification))  # type: ignore[misc]
            for sink in self.sinks
        }
        status = status_for(notification, self.dashboard_url)
        if notification.github is not None and status is not None:
            if self.github is None:
                activity.logger.warning(
                    "%s came from a GitHub deployment, but no GitHub credentials are set "
                    "(DIACHRONIC_GITHUB_TOKEN or DIACHRONIC_GITHUB_APP_ID): no deployment status reported",
                    notification.workflow_name,
                )
            else:
                github, ref = self.github, notification.github
                targets[GITHUB_TARGET] = (GITHUB_TARGET, lambda: github.create_status(ref, status))
        return targets

    @activity.defn
    @translate_errors
    async def publish_notification(self, notification: Notification) -> PublishResult:
        details = activity.info().heartbeat_details
        earlier = PublishResult.model_validate(details[0]) if details else PublishResult(delivered=[])
        delivered, refused = list(earlier.delivered), dict(earlier.refused)
        targets = self._targets(notification)
        todo = [name for name in targets if name not in delivered and name not in refused]
        outcomes = await asyncio.gather(*(targets[name][1]() for name in todo), return_exceptions=True)
        retry: list[str] = []
        for name, outcome in zip(todo, outcomes, strict=True):
            kind = targets[name][0]
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # cancelled: the workflow is going away
            if isinstance(outcome, DiachronicError) and not outcome.retryable:
                refused[name] = outcome.message
                activity.logger.warning("notification %s refused by %s: %s", notification.id, name, outcome.message)
                NOTIFICATIONS.labels(target=kind, result="refused").inc()
            elif isinstance(outcome, Exception):  # a sink's own errors name no secret; anything else only its type
                retry.append(outcome.message if isinstance(outcome, DiachronicError) else type(outcome).__name__)
                NOTIFICATIONS.labels(target=kind, result="retrying").inc()
            else:
                delivered.append(name)
                NOTIFICATIONS.labels(target=kind, result="delivered").inc()
        progress = PublishResult(delivered=delivered, refused=refused)
        activity.heartbeat(progress.model_dump(mode="json"))  # the next attempt skips what is settled
        if retry:
            raise NotificationError(f"notification {notification.id} not delivered yet: " + "; ".join(retry))
        return progress

    def all(self) -> list[Callable[..., Any]]:
        return [getattr(self, name) for name in self.NAMES]

    async def close(self) -> None:
        for sink in self.sinks:
            await sink.close()
        if self.github is not None:
            await self.github.close()
