"""A workflow that publishes one notification the way the CI does: one activity, Temporal's retries."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from diachronic.notify.activities import NotifyActivities, PublishResult
    from diachronic.notify.events import Notification

FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_interval=timedelta(milliseconds=200))


@workflow.defn
class PublishWorkflow:
    @workflow.run
    async def run(self, notification: Notification) -> PublishResult:
        return await workflow.execute_activity_method(
            NotifyActivities.publish_notification,
            notification,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=FAST_RETRY,
        )
