"""``diachronic.temporal_errors``: what the Temporal SDK raises, as our error tree (and what it must leave alone)."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from diachronic.errors import (
    AlreadyStarted,
    BackendError,
    DiachronicError,
    InvalidInput,
    NotFound,
    TimedOut,
    UpdateRejected,
)
from diachronic.temporal_errors import UNPROCESSED_UPDATE, temporal_errors


def rpc(status: RPCStatusCode, message: str = "said the server") -> RPCError:
    return RPCError(message, status, b"")


def update_failed(message: str, kind: str) -> WorkflowUpdateFailedError:
    return WorkflowUpdateFailedError(ApplicationError(message, type=kind))


STARTED = WorkflowAlreadyStartedError("wf-1", "orders", run_id="r1")
COMPLETED = rpc(RPCStatusCode.FAILED_PRECONDITION, "workflow execution already completed")
CASES = {  # what the SDK raised: (our error, how its message begins after "start x: ", retryable)
    "already started": (STARTED, AlreadyStarted, "workflow 'wf-1' is already running", False),
    "a validator's refusal, in its own words": (update_failed("no: why", "InvalidPhase"), UpdateRejected, "", False),
    "a dropped update is sent again": (update_failed("x", UNPROCESSED_UPDATE), BackendError, "Temporal dropped", True),
    "not found": (rpc(RPCStatusCode.NOT_FOUND), NotFound, "nothing is running", False),
    "already completed": (COMPLETED, NotFound, "nothing is running", False),
    "exists": (rpc(RPCStatusCode.ALREADY_EXISTS), AlreadyStarted, "said the server", False),
    "invalid": (rpc(RPCStatusCode.INVALID_ARGUMENT), InvalidInput, "Temporal refused it", False),
    "down": (rpc(RPCStatusCode.UNAVAILABLE), BackendError, "Temporal is unavailable (UNAVAILABLE", True),
    "cannot connect": (RuntimeError("Failed client connect: refused"), BackendError, "Temporal is unavailable", True),
    "the answer did not come": (TimeoutError(), TimedOut, "timed out waiting", True),
    "the update's answer did not come": (WorkflowUpdateRPCTimeoutOrCancelledError(), TimedOut, "timed out", True),
    "the SDK's own check": (ValueError("bad retry policy"), InvalidInput, "bad retry policy", False),
}  # fmt: skip


@pytest.mark.parametrize(("raised", "expected", "message", "retryable"), CASES.values(), ids=CASES.keys())
async def test_each_sdk_error_becomes_ours(
    raised: BaseException, expected: type[DiachronicError], message: str, retryable: bool
) -> None:
    with pytest.raises(DiachronicError) as caught:
        async with temporal_errors("start x"):
            raise raised
    assert type(caught.value) is expected
    said = caught.value.message
    assert said == "no: why" if expected is UpdateRejected else said.startswith(f"start x: {message}"), said
    assert caught.value.retryable is retryable


async def test_other_errors_and_a_cancelled_wait_pass_through() -> None:
    with pytest.raises(RuntimeError, match="unrelated"):
        async with temporal_errors("start x"):
            raise RuntimeError("unrelated")

    async def cancelled_while_waiting_for_an_update() -> None:
        async with temporal_errors("update x"):
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise WorkflowUpdateRPCTimeoutOrCancelledError() from None  # what the SDK raises when cancelled

    # The caller's own timeout must stay a timeout (a 503 "no CI worker" in the webhook), not become TimedOut.
    with pytest.raises((TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError)):
        await asyncio.wait_for(cancelled_while_waiting_for_an_update(), 0.05)
