"""The one place where the Temporal SDK's exceptions become ours (``diachronic.errors``).

Everything that calls Temporal from outside a workflow (the CI's client, the signaler, the HTTP app, the webhook)
does it inside ``temporal_errors(what)``: anything Temporal blames on the request becomes InvalidInput, NotFound or
AlreadyStarted; an update the workflow refused is UpdateRejected, in the workflow's own words; an unreachable,
overloaded or failing Temporal is a retryable BackendError. Nothing escapes as a bare SDK exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from diachronic.errors import AlreadyStarted, BackendError, InvalidInput, NotFound, TimedOut, UpdateRejected

__all__ = ["temporal_errors"]

UNPROCESSED_UPDATE = "UnprocessedUpdate"
"""The server's failure type for an update a workflow task completed without processing: not the workflow's refusal."""

_INVALID = {
    RPCStatusCode.INVALID_ARGUMENT,
    RPCStatusCode.FAILED_PRECONDITION,
    RPCStatusCode.OUT_OF_RANGE,
}


@asynccontextmanager
async def temporal_errors(what: str) -> AsyncIterator[None]:
    """Translate what Temporal raises while doing ``what`` (e.g. "start workflow 'x'") into our error tree."""
    try:
        yield
    except WorkflowAlreadyStartedError as error:
        raise AlreadyStarted(
            f"{what}: workflow {error.workflow_id!r} is already running", run_id=error.run_id
        ) from None
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        if isinstance(cause, ApplicationError) and cause.type == UNPROCESSED_UPDATE:
            raise BackendError(
                f"{what}: Temporal dropped the update before the workflow saw it (it happens right after a restart "
                "of Temporal or of the worker); send it again"
            ) from None
        raise UpdateRejected(cause.message if isinstance(cause, ApplicationError) else str(cause)) from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # our caller cancelled the wait (its own timeout): not the workflow's silence, not ours to rename
        raise TimedOut(f"{what}: timed out waiting for the workflow's answer") from None
    except TimeoutError:
        raise TimedOut(f"{what}: timed out waiting for the workflow's answer") from None
    except RPCError as error:
        status = error.status
        if status == RPCStatusCode.NOT_FOUND or "already completed" in error.message:
            raise NotFound(f"{what}: nothing is running ({error.message})") from None
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
