"""How CI workflows run one step (one activity): Temporal's retry policy is the only retry layer.

A retryable failure is retried by Temporal with back-off, inside one activity execution: the workflow's history
does not grow with the attempts, and ``status`` shows the pending attempt's last failure
(``diachronic.ci.client``). A step may keep failing for at most its time budget (``step_timeout_s``, one hour by
default): an outage longer than that ends the step with the typed reason ``StepTimedOut`` (naming the last
failure) instead of waiting forever. A non-retryable failure ends the step at once with its own typed name.
Either way the step raises a non-retryable ``ApplicationError`` whose ``type`` is that name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    TimeoutError,
    TimeoutType,
    is_cancelled_exception,
)

T = TypeVar("T")

STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=0,  # unlimited: the step's time budget bounds it
)
ATTEMPT_TIMEOUT = timedelta(seconds=30)
STEP_TIMED_OUT = "StepTimedOut"


def history_is_long(limit: int) -> bool:
    """Time to continue-as-new: Temporal suggests it, or this run's history passed ``limit`` events."""
    info = workflow.info()
    return info.is_continue_as_new_suggested() or info.get_current_history_length() > limit


async def run_step(
    activity: Callable[[Any, Any], Awaitable[T]],
    arg: Any,
    *,
    budget_s: float,
    attempt_timeout: timedelta = ATTEMPT_TIMEOUT,
    heartbeat: timedelta | None = None,
) -> T:
    """Run one activity, retried by Temporal for at most ``budget_s``; failures as described in the module."""
    try:
        result: T = await workflow.execute_activity_method(
            activity,
            arg,
            start_to_close_timeout=attempt_timeout,
            schedule_to_close_timeout=timedelta(seconds=max(budget_s, attempt_timeout.total_seconds())),
            heartbeat_timeout=heartbeat,
            retry_policy=STEP_RETRY,
        )
    except ActivityError as error:
        if is_cancelled_exception(error):
            raise  # the workflow is being cancelled: never turn that into a failure of the step
        raise step_failure(error, budget_s) from error
    return result


def step_failure(error: ActivityError, budget_s: float) -> ApplicationError:
    """The typed, non-retryable error a failed step ends with."""
    cause = error.cause
    budget_spent = isinstance(cause, TimeoutError) and cause.type is TimeoutType.SCHEDULE_TO_CLOSE
    if budget_spent or error.retry_state is RetryState.TIMEOUT:
        last = cause.cause if isinstance(cause, TimeoutError) else cause
        why = f": last failure {failure_name(last)}: {failure_message(last)}" if last is not None else ""
        return ApplicationError(
            f"{error.activity_type} kept failing for {budget_s:g} s{why}", type=STEP_TIMED_OUT, non_retryable=True
        )
    if cause is None:
        return ApplicationError(str(error), type="StepFailed", non_retryable=True)
    return ApplicationError(failure_message(cause), type=failure_name(cause), non_retryable=True)


def failure_name(error: BaseException | None) -> str:
    if isinstance(error, ApplicationError):
        return error.type or "ApplicationError"
    return type(error).__name__


def failure_message(error: BaseException | None) -> str:
    return error.message if isinstance(error, ApplicationError) else str(error)
