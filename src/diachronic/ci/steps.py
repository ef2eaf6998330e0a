"""How CI workflows call activities: retried with back-off for as long as the error is retryable, with the
reason for waiting recorded where ``status`` shows it; a non-retryable error ends the step with its typed name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

T = TypeVar("T")

ATTEMPTS_PER_CALL = 3
CALL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=4),
    maximum_attempts=ATTEMPTS_PER_CALL,
)
MAX_BACKOFF_S = 30.0


def history_is_long(limit: int) -> bool:
    """Time to continue-as-new: Temporal suggests it, or this run's history passed ``limit`` events."""
    info = workflow.info()
    return info.is_continue_as_new_suggested() or info.get_current_history_length() > limit


def describe_failure(error: BaseException) -> tuple[str, str, bool]:
    """(name, message, retryable) of an activity failure."""
    cause = error.cause if isinstance(error, ActivityError) and error.cause is not None else error
    if isinstance(cause, ApplicationError):
        return cause.type or "ApplicationError", cause.message, not cause.non_retryable
    return type(cause).__name__, str(cause), True


async def call(
    activity: Callable[[Any, Any], Awaitable[T]],
    arg: Any,
    *,
    on_wait: Callable[[str | None], None],
    timeout: timedelta = timedelta(seconds=30),
    heartbeat: timedelta | None = None,
) -> T:
    """Run one activity until it succeeds; ``on_wait`` receives why we wait (None once it worked)."""
    rounds = 0
    while True:
        try:
            result: T = await workflow.execute_activity_method(
                activity,
                arg,
                start_to_close_timeout=timeout,
                heartbeat_timeout=heartbeat,
                retry_policy=CALL_RETRY,
            )
        except ActivityError as error:
            if is_cancelled_exception(error):
                raise  # the workflow is being cancelled: never retry past it
            name, message, retryable = describe_failure(error)
            if not retryable:
                on_wait(f"{name}: {message}")
                raise ApplicationError(message, type=name, non_retryable=True) from error
            rounds += 1
            backoff = min(2.0**rounds, MAX_BACKOFF_S)
            on_wait(f"{name}: {message} (retrying in {backoff:.0f} s, attempt {rounds * ATTEMPTS_PER_CALL})")
            await workflow.sleep(backoff)
            continue
        if rounds:
            on_wait(None)
        return result
