"""The CI's activities: I/O and nothing else. Decisions live in ``diachronic.ci.planning``.

Every activity takes one contract model and returns one. Errors leave an activity only as Temporal
``ApplicationError`` with ``type`` = the error's stable name (``translate_errors``), so workflows match on names.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import ValidationError
from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from diachronic.ci.contracts import (
    ActivityErrorInfo,
    ApplyFlagInput,
    CIState,
    CountRunningInput,
    DeleteWorkersInput,
    Empty,
    FindWorkersInput,
    FlagList,
    FlagNameInput,
    FlagReading,
    ListFlagsInput,
    MigrateBatchInput,
    MigrateBatchResult,
    RunningCount,
    SetPercentInput,
    WorkerSetList,
)
from diachronic.contracts import MIGRATE_SIGNAL, VersionInfo, ci_workflow_id
from diachronic.errors import BackendError, DiachronicError
from diachronic.flags import FlagStore
from diachronic.flags.evaluation import choose
from diachronic.workers import WorkerBackend

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def to_application_error(error: BaseException) -> ApplicationError:
    """One translation for every activity: typed errors keep their name and retry flag; the rest retry."""
    if isinstance(error, ApplicationError):
        return error
    if isinstance(error, DiachronicError):
        info = ActivityErrorInfo(name=error.name, message=error.message, retryable=error.retryable)
    elif isinstance(error, ValidationError):
        info = ActivityErrorInfo(name="InvalidInput", message=str(error), retryable=False)
    elif isinstance(error, RPCError):
        info = ActivityErrorInfo(name="TemporalError", message=error.message, retryable=True)
    else:
        info = ActivityErrorInfo(name="UnexpectedError", message=f"{type(error).__name__}: {error}", retryable=True)
    after = error.retry_after_s if isinstance(error, BackendError) else None
    return ApplicationError(
        info.message,
        info,
        type=info.name,
        non_retryable=not info.retryable,
        next_retry_delay=timedelta(seconds=after) if after else None,
    )


def translate_errors(fn: F) -> F:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            raise to_application_error(error) from error

    return wrapper  # type: ignore[return-value]


def visibility_string(value: str) -> str:
    """Quote a value for a visibility query (names are validated, but never trust a string in a query)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def running_query(task_queue: str) -> str:
    return f'TaskQueue={visibility_string(task_queue)} AND ExecutionStatus="Running"'


def migrate_request_id(to_task_queue: str, run_id: str) -> str:
    """Temporal drops a second signal with the same request id to the same run: exactly once across retries."""
    return f"diachronic-migrate:{to_task_queue}:{run_id}"


class CIActivities:
    """Activities bound to the configured flag store, worker backend and Temporal client."""

    def __init__(self, flags: FlagStore, workers: WorkerBackend, client: Client) -> None:
        self.flags = flags
        self.workers = workers
        self.client = client

    # ------------------------------------------------------------------------------------------- flags

    @activity.defn(name="list_version_flags")
    @translate_errors
    async def list_version_flags(self, input: ListFlagsInput) -> FlagList:
        return FlagList(flags=await self.flags.list_version_flags(input.workflow_name))

    @activity.defn(name="apply_version_flag")
    @translate_errors
    async def apply_version_flag(self, input: ApplyFlagInput) -> VersionInfo:
        return await self.flags.apply_version_flag(input.workflow_name, input.version_id)

    @activity.defn(name="set_traffic_percent")
    @translate_errors
    async def set_traffic_percent(self, input: SetPercentInput) -> Empty:
        await self.flags.set_general_percent(input.flag_name, input.percent)
        return Empty()

    @activity.defn(name="read_version_flag")
    @translate_errors
    async def read_version_flag(self, input: FlagNameInput) -> FlagReading:
        flags = await self.flags.list_version_flags(input.workflow_name, include_archived=True)
        return FlagReading(flag=next((f for f in flags if f.info.flag_name == input.flag_name), None))

    @activity.defn(name="archive_version_flag")
    @translate_errors
    async def archive_version_flag(self, input: FlagNameInput) -> Empty:
        await self.flags.archive_flag(input.flag_name)
        return Empty()

    # ------------------------------------------------------------------------------------------- Temporal

    @activity.defn(name="count_running")
    @translate_errors
    async def count_running(self, input: CountRunningInput) -> RunningCount:
        count = await self.client.count_workflows(running_query(input.task_queue))
        return RunningCount(running=count.count)

    @activity.defn(name="migrate_batch")
    @translate_errors
    async def migrate_batch(self, input: MigrateBatchInput) -> MigrateBatchResult:
        """List what runs on the old queue, pick the runs the flag now routes to the new version, signal a batch."""
        runs: list[tuple[str, str, str]] = []
        async for execution in self.client.list_workflows(running_query(input.from_task_queue), page_size=1000):
            runs.append((execution.id, execution.run_id, execution.workflow_type))
        activity.heartbeat(len(runs))
        flags = await self.flags.list_version_flags(input.workflow_name)
        running_ids = {run_id for _, run_id, _ in runs}
        already = set(input.already_signalled)
        eligible = [
            (workflow_id, run_id)
            for workflow_id, run_id, workflow_type in runs
            if workflow_type == input.workflow_name
            and (chosen := choose(flags, workflow_id, False)) is not None
            and chosen.info.task_queue == input.to_version.task_queue
        ]
        todo = [(w, r) for w, r in eligible if r not in already]
        batch, rest = todo[: input.batch_size], todo[input.batch_size :]
        outcomes = await self._signal_all(batch, input.to_version.task_queue, input.concurrency)
        signalled = [run_id for (_, run_id), outcome in zip(batch, outcomes, strict=True) if outcome == "signalled"]
        return MigrateBatchResult(
            signalled=signalled,
            still_signalled=[r for r in input.already_signalled if r in running_ids],
            failed=sum(1 for outcome in outcomes if outcome == "failed"),
            eligible_unsignalled=len(rest),
            eligible=len(eligible),
            running_on_old_queue=len(runs),
        )

    async def _signal_all(self, runs: list[tuple[str, str]], task_queue: str, concurrency: int) -> list[str]:
        semaphore = asyncio.Semaphore(concurrency)
        payloads = await self.client.data_converter.encode([{"taskQueue": task_queue}])
        done = 0

        async def one(workflow_id: str, run_id: str) -> str:
            nonlocal done
            async with semaphore:
                request = SignalWorkflowExecutionRequest(
                    namespace=self.client.namespace,
                    workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                    signal_name=MIGRATE_SIGNAL,
                    identity=self.client.identity,
                    request_id=migrate_request_id(task_queue, run_id),
                )
                request.input.payloads.extend(payloads)
                try:
                    await self.client.workflow_service.signal_workflow_execution(request, retry=True)
                except RPCError as error:
                    if error.status == RPCStatusCode.NOT_FOUND:
                        return "gone"  # it closed or left the old queue: nothing to migrate
                    activity.logger.warning("migrate signal to %s failed: %s", workflow_id, error.message)
                    return "failed"
                done += 1
                if done % 100 == 0:
                    activity.heartbeat(done)
                return "signalled"

        return await asyncio.gather(*(one(w, r) for w, r in runs))

    # ------------------------------------------------------------------------------------------- workers

    @activity.defn(name="find_workers")
    @translate_errors
    async def find_workers(self, input: FindWorkersInput) -> WorkerSetList:
        """The version's workers, and the versions the CI's queue will deploy next (read just before deleting)."""
        found = await self.workers.find(input.workflow_name, input.version_id)
        return WorkerSetList(worker_sets=found, queued_versions=await self._queued_versions(input.workflow_name))

    async def _queued_versions(self, workflow_name: str) -> list[str]:
        from diachronic.ci.workflow import DB_QUERY  # the workflow module imports this one

        try:
            state = await self.client.get_workflow_handle(ci_workflow_id(workflow_name)).query(
                DB_QUERY, result_type=CIState
            )
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return []  # no CI for this workflow (a cleanup started by hand): nothing is queued
            raise
        return [request.event.version_id for request in state.queue]

    @activity.defn(name="delete_workers")
    @translate_errors
    async def delete_workers(self, input: DeleteWorkersInput) -> Empty:
        await self.workers.delete(input.worker_set)
        return Empty()

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.list_version_flags,
            self.apply_version_flag,
            self.set_traffic_percent,
            self.read_version_flag,
            self.archive_version_flag,
            self.count_running,
            self.migrate_batch,
            self.find_workers,
            self.delete_workers,
        ]
