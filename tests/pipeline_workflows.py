"""Workflows for the delivery-pipeline tests (in their own module: the sandbox re-imports workflow modules)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from diachronic.ci.outbox import Outbox
    from diachronic.ci.planner.freeze import Freeze, FreezeWindow, active_freeze
    from diachronic.contracts import Contract
    from diachronic.notify.activities import NotifyActivities, PublishResult
    from diachronic.notify.events import Notification

FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_interval=timedelta(milliseconds=200))


@workflow.defn
class PublishWorkflow:
    """Publishes one notification the way the CI does: one activity, Temporal's retries."""

    @workflow.run
    async def run(self, notification: Notification) -> PublishResult:
        return await workflow.execute_activity_method(
            NotifyActivities.publish_notification,
            notification,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=FAST_RETRY,
        )


@activity.defn(name="always_fails")
async def always_fails() -> None:
    raise ApplicationError("no luck", type="FlagStoreError")


@workflow.defn
class FailingWorkflow:
    """Three failed attempts of one activity."""

    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(
            always_fails,
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=3),
        )


class OutboxRun(Contract):
    add: list[Notification]
    pending: list[Notification] = []  # what a previous run handed over (its state, through continue-as-new)
    hand_over: bool = False  # settle, then continue-as-new with what is not published yet


@workflow.defn
class OutboxWorkflow:
    """Takes over what a previous run left, adds notifications to its outbox as a CI workflow does, and waits
    until they are published."""

    @workflow.run
    async def run(self, input: OutboxRun) -> None:
        outbox = Outbox(list(input.pending))
        outbox.start()
        outbox.add(input.add)
        if input.hand_over:
            await outbox.settle(timedelta(minutes=1))
            workflow.continue_as_new(OutboxRun(add=[], pending=outbox.pending))
        await outbox.flush(timedelta(hours=1))


class WindowCheck(Contract):
    windows: list[FreezeWindow]


@workflow.defn
class FreezeWindowWorkflow:
    """Evaluates freeze windows inside the workflow sandbox, as the CI does."""

    @workflow.run
    async def run(self, input: WindowCheck) -> Freeze | None:
        return active_freeze(workflow.now(), "orders", [], input.windows)
