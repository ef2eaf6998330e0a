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


@pytest.mark.parametrize(
    ("raised", "expected", "message", "retryable"),
    [
        pytest.param(
            WorkflowAlreadyStartedError("wf-1", "orders", run_id="r1"),
            AlreadyStarted,
            "start x: workflow 'wf-1' is already running",
            False,
            id="already started",
        ),
        pytest.param(
            WorkflowUpdateFailedError(ApplicationError("pause: nothing is being deployed", type="InvalidPhase")),
            UpdateRejected,
            "pause: nothing is being deployed",
            False,
            id="a validator's refusal, in its own words",
        ),
        pytest.param(
            WorkflowUpdateFailedError(ApplicationError("rejected: not processed by worker", type=UNPROCESSED_UPDATE)),
            BackendError,
            "start x: Temporal dropped the update before the workflow saw it",
            True,
            id="an update the server dropped is worth sending again",
        ),
        pytest.param(rpc(RPCStatusCode.NOT_FOUND), NotFound, "start x: nothing is running", False, id="not found"),
        pytest.param(
            rpc(RPCStatusCode.FAILED_PRECONDITION, "workflow execution already completed"),
            NotFound,
            "start x: nothing is running",
            False,
            id="already completed",
        ),
        pytest.param(rpc(RPCStatusCode.ALREADY_EXISTS), AlreadyStarted, "start x: said the server", False, id="exists"),
        pytest.param(
            rpc(RPCStatusCode.INVALID_ARGUMENT), InvalidInput, "start x: Temporal refused it", False, id="invalid"
        ),
        pytest.param(
            rpc(RPCStatusCode.UNAVAILABLE),
            BackendError,
            "start x: Temporal is unavailable (UNAVAILABLE",
            True,
            id="down",
        ),
        pytest.param(
            RuntimeError("Failed client connect: connection refused"),
            BackendError,
            "start x: Temporal is unavailable (cannot connect)",
            True,
            id="cannot connect",
        ),
        pytest.param(TimeoutError(), TimedOut, "start x: timed out waiting", True, id="the answer did not come"),
        pytest.param(
            WorkflowUpdateRPCTimeoutOrCancelledError(),
            TimedOut,
            "start x: timed out waiting",
            True,
            id="update timeout",
        ),
        pytest.param(ValueError("bad retry policy"), InvalidInput, "start x: bad retry policy", False, id="sdk check"),
    ],
)
async def test_each_sdk_error_becomes_ours(
    raised: BaseException, expected: type[DiachronicError], message: str, retryable: bool
) -> None:
    with pytest.raises(DiachronicError) as caught:
        async with temporal_errors("start x"):
            raise raised
    assert type(caught.value) is expected
    assert caught.value.message.startswith(message), caught.value.message
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
