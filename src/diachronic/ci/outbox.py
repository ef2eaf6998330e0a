"""How a CI workflow publishes the notifications the planner decided: in order, one at a time, by a background
task of the workflow, so a sink or GitHub that is down never holds the deployment up.

Each notification is one ``publish_notification`` activity with Temporal's retries and back-off, for up to a day.
What is not published yet (``pending``) lives in the workflow's state and is carried through continue-as-new: a
notification whose activity was in flight is published again by the next run (receivers de-duplicate on its id).
Order matters for GitHub, which shows a deployment's newest status: ``in_progress`` must never land after
``success``. The outbox is bounded: past ``LIMIT``, the oldest step notifications give way (the end never does).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from diachronic.notify.activities import NotifyActivities
    from diachronic.notify.events import Notification, NotificationKind

__all__ = ["LIMIT", "OUTBOX_SETTLE", "PUBLISH_FOR", "PUBLISH_RETRY", "Outbox"]

LIMIT = 100
PUBLISH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=5)
)
PUBLISH_FOR = timedelta(days=1)  # then the notification is given up (logged): its sinks were down all day
ATTEMPT_TIMEOUT = timedelta(minutes=1)  # every sink's own timeout is far shorter
OUTBOX_SETTLE = timedelta(seconds=30)  # how long a hand-over waits for the publication in flight
_DROPPABLE = {NotificationKind.STEP_REACHED, NotificationKind.PAUSED, NotificationKind.RESUMED}


class Outbox:
    """Publishes ``pending`` (a list the workflow's state owns) from a background task; see the module."""

    def __init__(self, pending: list[Notification]) -> None:
        self.pending = pending
        self._task: asyncio.Task[None] | None = None
        self._publishing = False
        self._held = False

    def add(self, notifications: list[Notification]) -> None:
        self.pending.extend(notifications)
        while len(self.pending) > LIMIT:
            droppable = [i for i, n in enumerate(self.pending[1:], start=1) if n.kind in _DROPPABLE]
            index = droppable[0] if droppable else 1
            dropped = self.pending.pop(index)
            workflow.logger.warning("outbox full: notification %s (%s) not published", dropped.id, dropped.kind)
        self.start()

    def start(self) -> None:
        """Start publishing (what a previous run left, too); ``add`` starts it as well."""
        if self._task is None:
            self._task = asyncio.create_task(self._publish())

    async def _publish(self) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self.pending) and not self._held)
            notification = self.pending[0]
            self._publishing = True
            try:
                await workflow.execute_activity_method(
                    NotifyActivities.publish_notification,
                    notification,
                    start_to_close_timeout=ATTEMPT_TIMEOUT,
                    schedule_to_close_timeout=PUBLISH_FOR,
                    retry_policy=PUBLISH_RETRY,
                )
            except ActivityError as error:
                workflow.logger.warning("notification %s given up: %s", notification.id, error.cause or error)
            finally:
                self._publishing = False
            if self.pending and self.pending[0] is notification:
                self.pending.pop(0)

    async def settle(self, within: timedelta) -> None:
        """Before continue-as-new: start nothing more and let the publication in flight end (at most ``within``), so
        the next run takes over ``pending`` without an activity left running for nobody."""
        self._held = True
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(lambda: not self._publishing, timeout=within)

    async def flush(self, within: timedelta) -> None:
        """Wait until everything is published, at most ``within`` (before the workflow ends or hands over)."""
        self.start()
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(lambda: not self.pending, timeout=within)
