"""``Signaler``: start, signal and update workflows, choosing task queues by the flags.

The HTTP route ``POST /instruction`` is a thin adapter over ``Signaler.execute``, so users' own services get the
same decisions in-process (no HTTP hop): an empty ``taskQueue`` is routed with the flag context
``{userId: workflowId, isTest}``; every Temporal error is translated by ``temporal_errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from diachronic.contracts import Contract, VersionInfo
from diachronic.errors import DiachronicError, InvalidInput
from diachronic.flags import FlagStore
from diachronic.signaler.errors import TaskQueueNotFound
from diachronic.signaler.instructions import (
    BatchFailure,
    BatchResult,
    Instruction,
    SignalArgs,
    SignalBatchInstruction,
    SignalInstruction,
    SignalResult,
    SignalWithStartArgs,
    SignalWithStartBatchInstruction,
    SignalWithStartInstruction,
    SignalWithStartResult,
    StartArgs,
    StartInstruction,
    StartResult,
    UpdateArgs,
    UpdateInstruction,
    UpdateOrStartArgs,
    UpdateOrStartInstruction,
    parse_instruction,
)
from diachronic.temporal_errors import temporal_errors

__all__ = ["DEFAULT_UPDATE_TIMEOUT", "Signaler"]

log = logging.getLogger(__name__)

DEFAULT_UPDATE_TIMEOUT = timedelta(seconds=4)  # the original's request-response timeout
A = TypeVar("A", SignalArgs, SignalWithStartArgs)
R = TypeVar("R", SignalResult, SignalWithStartResult)
T = TypeVar("T")


class Signaler:
    """The signaler's decisions, in-process. ``client`` and ``flags`` stay owned by the caller."""

    def __init__(
        self,
        client: Client,
        flags: FlagStore,
        *,
        update_timeout: timedelta = DEFAULT_UPDATE_TIMEOUT,
        batch_concurrency: int = 20,
    ) -> None:
        self.client = client
        self.flags = flags
        self.update_timeout = update_timeout
        self.batch_concurrency = batch_concurrency

    # -- routing -----------------------------------------------------------------------------------------------

    async def route(self, workflow_type: str, workflow_id: str, *, is_test: bool = False) -> VersionInfo:
        """The version a new ``workflow_type`` with this id starts on (newest enabled flag for the id wins)."""
        try:
            version = await self.flags.route(workflow_type, workflow_id, is_test=is_test)
        except InvalidInput as error:
            raise InvalidInput(f"workflowType {workflow_type!r} cannot be routed by flags: {error.message}") from None
        if version is None:
            raise TaskQueueNotFound(
                f"Could not determine the task queue for {workflow_type}: no version of it is enabled "
                f"for this id{' (test traffic)' if is_test else ''}; deploy one or give a taskQueue"
            )
        return version

    async def _queue(self, args: StartArgs | SignalWithStartArgs) -> tuple[str, str | None]:
        if args.task_queue:
            return args.task_queue, None
        version = await self.route(args.workflow_type, args.workflow_id, is_test=args.routing_is_test())
        return version.task_queue, version.version_id

    # -- actions -----------------------------------------------------------------------------------------------

    async def start(self, args: StartArgs) -> StartResult:
        queue, version_id = await self._queue(args)
        async with temporal_errors(f"start {args.workflow_type} {args.workflow_id!r}"):
            handle = await self.client.start_workflow(
                args.workflow_type, args=args.args, id=args.workflow_id, task_queue=queue, **args.start_kwargs()
            )
        return StartResult(
            run_id=handle.first_execution_run_id or handle.result_run_id or "",
            workflow_id=args.workflow_id,
            task_queue=queue,
            version_id=version_id,
        )

    async def signal(self, args: SignalArgs) -> SignalResult:
        """Describe, then signal the run described, so the answer names the run that got the signal."""
        async with temporal_errors(f"signal {args.signal!r} to {args.workflow_id!r}"):
            described = await self.client.get_workflow_handle(args.workflow_id, run_id=args.run_id).describe()
            run = self.client.get_workflow_handle(args.workflow_id, run_id=described.run_id)
            await run.signal(args.signal, args=args.signal_args)
        return SignalResult(
            workflow_id=args.workflow_id,
            run_id=described.run_id,
            task_queue=described.task_queue,
            correlation_id=args.correlation_id,
        )

    async def signal_with_start(self, args: SignalWithStartArgs) -> SignalWithStartResult:
        queue, version_id = await self._queue(args)
        async with temporal_errors(f"signal-with-start {args.workflow_type} {args.workflow_id!r}"):
            handle = await self.client.start_workflow(
                args.workflow_type,
                args=args.args,
                id=args.workflow_id,
                task_queue=queue,
                start_signal=args.signal,
                start_signal_args=args.signal_args,
                **args.start_kwargs(),
            )
        return SignalWithStartResult(
            workflow_id=args.workflow_id,
            signaled_run_id=handle.result_run_id or "",
            task_queue=queue,
            version_id=version_id,
        )

    async def _batch(self, items: Sequence[A], one: Callable[[A], Awaitable[R]]) -> BatchResult:
        """Every item runs (bounded concurrency); a failing item is reported, never fails the others."""
        limit = asyncio.Semaphore(self.batch_concurrency)

        async def run(index: int, item: A) -> R | BatchFailure:
            async with limit:
                try:
                    return await one(item)
                except DiachronicError as error:
                    return BatchFailure(index=index, workflow_id=item.workflow_id, error=error.name, message=str(error))
                except Exception:
                    log.exception("signaler: batch item %d (%s) failed unexpectedly", index, item.workflow_id)
                    return BatchFailure(
                        index=index, workflow_id=item.workflow_id, error="InternalError", message="internal error"
                    )

        results = await asyncio.gather(*(run(i, item) for i, item in enumerate(items)))
        return BatchResult(
            successes=[r for r in results if not isinstance(r, BatchFailure)],
            failures=[r for r in results if isinstance(r, BatchFailure)],
        )

    async def signal_batch(self, items: Sequence[SignalArgs]) -> BatchResult:
        return await self._batch(items, self.signal)

    async def signal_with_start_batch(self, items: Sequence[SignalWithStartArgs]) -> BatchResult:
        return await self._batch(items, self.signal_with_start)

    async def update(self, args: UpdateArgs) -> Any:
        """A Temporal update named ``signal``; returns the workflow's reply (the original used MQTT for this)."""
        handle = self.client.get_workflow_handle(args.workflow_id, run_id=args.run_id)
        async with temporal_errors(f"update {args.signal!r} of {args.workflow_id!r}"):
            return await self._bounded(
                handle.execute_update(args.signal, args=args.signal_args, rpc_timeout=self.update_timeout)
            )

    async def update_or_start(self, args: UpdateOrStartArgs) -> Any:
        """Update-with-start: starts the workflow (queue chosen as for ``start``) if it is not running."""
        queue, _ = await self._queue(args)
        operation: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            args.workflow_type,
            args=args.args,
            id=args.workflow_id,
            task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            **args.start_kwargs(),
        )
        try:
            async with temporal_errors(f"update-or-start {args.signal!r} of {args.workflow_id!r}"):
                return await self._bounded(
                    self.client.execute_update_with_start_workflow(
                        args.signal,
                        args=args.signal_args,
                        start_workflow_operation=operation,
                        rpc_timeout=self.update_timeout,
                    )
                )
        finally:
            # The SDK also puts a failed start on the operation's future; read it, or asyncio logs it as lost.
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(operation.workflow_handle(), timeout=0.01)

    async def _bounded(self, call: Awaitable[T]) -> T:
        """The RPC deadline normally ends a wait; this outer bound only guards against an SDK that keeps polling."""
        return await asyncio.wait_for(call, self.update_timeout.total_seconds() + 1.0)

    async def execute(self, instruction: Instruction | Mapping[str, Any] | bytes | str) -> Contract | Any:
        """Run one ``{action, args}`` instruction (a model, a decoded dict, or raw JSON), as ``POST /instruction``."""
        if not isinstance(instruction, Contract):
            instruction = parse_instruction(instruction)
        match instruction:
            case StartInstruction(args=args):
                return await self.start(args)
            case SignalInstruction(args=args):
                return await self.signal(args)
            case SignalWithStartInstruction(args=args):
                return await self.signal_with_start(args)
            case SignalBatchInstruction(args=items):
                return await self.signal_batch(items)
            case SignalWithStartBatchInstruction(args=items):
                return await self.signal_with_start_batch(items)
            case UpdateInstruction(args=args):
                return await self.update(args)
            case UpdateOrStartInstruction(args=args):
                return await self.update_or_start(args)
        raise InvalidInput(f"unknown instruction {type(instruction).__name__}")
