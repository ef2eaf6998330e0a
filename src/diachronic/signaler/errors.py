"""The signaler's errors, and the one place where Temporal's exceptions become ours.

    DiachronicError
    ├── InvalidInput
    │   ├── AlreadyStarted       a start for a workflow id that is already running (HTTP 409)
    │   ├── UpdateRejected       the workflow refused an update (validator or handler failure; HTTP 422)
    │   └── InvalidInstruction   the request body does not validate; names every bad field (HTTP 400)
    ├── NotFound
    │   └── TaskQueueNotFound    an empty taskQueue and no enabled version of the workflow type (HTTP 404)
    └── BackendError
        └── TimedOut             the workflow did not answer an update in time (HTTP 504)

``diachronic.http.errors`` maps these to statuses; the in-process client raises the same ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from diachronic.errors import BackendError, InvalidInput, NotFound

__all__ = [
    "AlreadyStarted",
    "InvalidInstruction",
    "TaskQueueNotFound",
    "TimedOut",
    "UpdateRejected",
    "temporal_errors",
]


class AlreadyStarted(InvalidInput):
    name = "WorkflowExecutionAlreadyStarted"

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class UpdateRejected(InvalidInput):
    name = "UpdateRejected"


class TaskQueueNotFound(NotFound):
    """The original's ``TaskQueueNotFound``: raised when no queue was found (its predicate was inverted, §11.22)."""

    name = "TaskQueueNotFound"


class TimedOut(BackendError):
    name = "RequestResponseTimedOut"


_INVALID = {
    RPCStatusCode.INVALID_ARGUMENT,
    RPCStatusCode.FAILED_PRECONDITION,
    RPCStatusCode.OUT_OF_RANGE,
}


@asynccontextmanager
async def temporal_errors(what: str) -> AsyncIterator[None]:
    """Translate what Temporal raises while doing ``what`` (e.g. "start workflow 'x'") into our error tree.

    Anything Temporal blames on the request is InvalidInput / NotFound / AlreadyStarted (4xx); an unreachable,
    overloaded or failing Temporal is a retryable BackendError (503). Nothing escapes as a bare exception."""
    try:
        yield
    except WorkflowAlreadyStartedError as error:
        raise AlreadyStarted(
            f"{what}: workflow {error.workflow_id!r} is already running", run_id=error.run_id
        ) from None
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise UpdateRejected(f"{what}: {message}") from None
    except (WorkflowUpdateRPCTimeoutOrCancelledError, TimeoutError):
        raise TimedOut(f"{what}: timed out waiting for the workflow's answer") from None
    except RPCError as error:
        status = error.status
        if status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"{what}: {error.message}") from None
        if status == RPCStatusCode.ALREADY_EXISTS:
            raise AlreadyStarted(f"{what}: {error.message}") from None
        if status in _INVALID:
            raise InvalidInput(f"{what}: Temporal refused it: {error.message}") from None
        name = status.name if status is not None else "UNKNOWN"
        raise BackendError(f"{what}: Temporal is unavailable ({name}: {error.message})") from None
    except RuntimeError as error:
        # The Rust core raises RuntimeError("Failed client connect: ...") while Temporal cannot be reached.
        if "connect" not in str(error).lower():
            raise
        raise BackendError(f"{what}: Temporal is unavailable (cannot connect)") from None
    except (ValueError, TypeError) as error:
        # The SDK checks a request before sending it (retry policy, payload conversion): the caller's mistake.
        raise InvalidInput(f"{what}: {error}") from None


class InvalidInstruction(InvalidInput):
    """A request body that does not validate; ``problems`` names each bad field (``args.workflowId``...)."""

    name = "InvalidInstruction"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in problems) or "invalid instruction")
        self.problems = problems
