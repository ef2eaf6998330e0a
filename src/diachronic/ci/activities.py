"""The CI's activities: I/O and nothing else. Decisions live in ``diachronic.ci.planner``.

Every activity takes one contract model and returns one. Errors leave an activity only as Temporal
``ApplicationError`` with ``type`` = the error's stable name (``translate_errors``), so workflows match on names.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

from pydantic import ValidationError
from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from diachronic.ci import evidence
from diachronic.ci.contracts import (
    DEPLOYING_QUERY,
    ActivityErrorInfo,
    ApplyFlagInput,
    CountRunningInput,
    DeleteWorkersInput,
    DeploymentObservation,
    Empty,
    FindWorkersInput,
    FlagList,
    FlagNameInput,
    FlagReading,
    HealthObservation,
    ListFlagsInput,
    MigrateBackEvidence,
    MigrateBatchInput,
    MigrateBatchResult,
    ObserveDeploymentInput,
    ObserveHealthInput,
    ObserveWorkersInput,
    ProbeMigrateBackInput,
    RunningCount,
    SetPercentInput,
    WorkerSetList,
    WorkersObservation,
)
from diachronic.ci.planner import migration, rollout
from diachronic.contracts import MIGRATE_SIGNAL, ci_workflow_id
from diachronic.errors import BackendError, ConcurrentEdit, DiachronicError
from diachronic.flags import FlagStore, VersionFlag
from diachronic.flags.evaluation import general_percent
from diachronic.temporal import live_pollers, visibility_string
from diachronic.versions import task_queue_twins
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
    wait = error.retry_after_s if isinstance(error, BackendError) and error.retryable else None
    return ApplicationError(
        info.message,
        info,
        type=info.name,
        non_retryable=not info.retryable,
        next_retry_delay=None if wait is None else timedelta(seconds=wait),  # the server said when to come back
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


def running_query(task_queue: str) -> str:
    return f'TaskQueue={visibility_string(task_queue)} AND ExecutionStatus="Running"'


def migrate_request_id(to_task_queue: str, run_id: str) -> str:
    """Temporal drops a second signal with the same request id to the same run: exactly once across retries."""
    return f"diachronic-migrate:{to_task_queue}:{run_id}"


class CIActivities:
    """Activities bound to the configured flag store, worker backend and Temporal client.

    Each activity's name is its method's name (``@activity.defn`` without ``name``), listed in ``NAMES``."""

    NAMES: ClassVar[tuple[str, ...]] = (
        "observe_deployment",
        "list_version_flags",
        "apply_version_flag",
        "set_traffic_percent",
        "read_version_flag",
        "archive_version_flag",
        "count_running",
        "migrate_batch",
        "find_workers",
        "delete_workers",
        "observe_workers",
        "observe_health",
        "probe_migrate_back",
    )

    def __init__(self, flags: FlagStore, workers: WorkerBackend, client: Client, *, environment: str) -> None:
        self.flags = flags
        self.workers = workers
        self.client = client
        self.environment = environment  # the deployment environment this CI serves

    # ------------------------------------------------------------------------------------------- flags

    @activity.defn
    @translate_errors
    async def observe_deployment(self, input: ObserveDeploymentInput) -> DeploymentObservation:
        """What a deployment's start is decided on: the live flags, this CI's environment, and the versions of other
        workflows that already have this version's task queue."""
        twins = []
        for workflow_name, version_id in task_queue_twins(input.workflow_name, input.version_id):
            flags = await self.flags.list_version_flags(workflow_name, include_archived=True)
            twins += [f.info for f in flags if f.info.version_id == version_id][:1]
        return DeploymentObservation(
            flags=await self.flags.list_version_flags(input.workflow_name),
            environment=self.environment,
            twins=twins,
        )

    @activity.defn
    @translate_errors
    async def list_version_flags(self, input: ListFlagsInput) -> FlagList:
        return FlagList(flags=await self.flags.list_version_flags(input.workflow_name))

    @activity.defn
    @translate_errors
    async def apply_version_flag(self, input: ApplyFlagInput) -> VersionFlag:
        """Make the version the newest; the flag as it is afterwards (the rollout starts from what it holds)."""
        info = await self.flags.apply_version_flag(input.workflow_name, input.version_id)
        flags = await self.flags.list_version_flags(input.workflow_name)
        applied = next((f for f in flags if f.info.flag_name == info.flag_name), None)
        if applied is None:  # archived or deleted by someone in between: the next step sees it
            return VersionFlag(info=info, enabled=False, archived=True)
        return applied

    @activity.defn
    @translate_errors
    async def set_traffic_percent(self, input: SetPercentInput) -> Empty:
        """A conditional write: ``ConcurrentEdit`` (non-retryable) when the flag no longer holds ``expected`` (unless it
        holds the target already: a retry of a write whose reply was lost)."""
        try:
            await self.flags.set_general_percent(input.flag_name, input.percent, expected=input.expected)
        except ConcurrentEdit as edit:
            if not rollout.write_landed(input.percent, edit.found):
                raise
        return Empty()

    @activity.defn
    @translate_errors
    async def read_version_flag(self, input: FlagNameInput) -> FlagReading:
        return FlagReading(flag=await self._read_flag(input.workflow_name, input.flag_name))

    async def _read_flag(self, workflow_name: str, flag_name: str) -> VersionFlag | None:
        flags = await self.flags.list_version_flags(workflow_name, include_archived=True)
        return next((f for f in flags if f.info.flag_name == flag_name), None)

    @activity.defn
    @translate_errors
    async def archive_version_flag(self, input: FlagNameInput) -> Empty:
        await self.flags.archive_flag(input.flag_name)
        return Empty()

    # ------------------------------------------------------------------------------------------- Temporal

    @activity.defn
    @translate_errors
    async def count_running(self, input: CountRunningInput) -> RunningCount:
        count = await self.client.count_workflows(running_query(input.task_queue))
        return RunningCount(running=count.count)

    @activity.defn
    @translate_errors
    async def migrate_batch(self, input: MigrateBatchInput) -> MigrateBatchResult:
        """List what runs on the old queue, pick the runs the flag now routes to the new version, signal a batch."""
        runs: list[migration.RunOnQueue] = []
        async for execution in self.client.list_workflows(running_query(input.from_task_queue), page_size=1000):
            runs.append(migration.RunOnQueue(execution.id, execution.run_id, execution.workflow_type))
        activity.heartbeat(len(runs))
        selection = migration.select_runs(
            runs,
            await self.flags.list_version_flags(input.workflow_name),
            workflow_name=input.workflow_name,
            to_task_queue=input.to_version.task_queue,
            already_signalled=input.already_signalled,
            batch_size=input.batch_size,
        )
        outcomes = await self._signal_all(selection.batch, input.to_version.task_queue, input.concurrency)
        return MigrateBatchResult(
            signalled=[
                run.run_id for run, outcome in zip(selection.batch, outcomes, strict=True) if outcome == "signalled"
            ],
            still_signalled=list(selection.still_signalled),
            failed=sum(1 for outcome in outcomes if outcome == "failed"),
            eligible_unsignalled=selection.left,
            eligible=selection.eligible,
            running_on_old_queue=len(runs),
        )

    async def _signal_all(self, runs: Sequence[migration.RunOnQueue], task_queue: str, concurrency: int) -> list[str]:
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

        return await asyncio.gather(*(one(run.workflow_id, run.run_id) for run in runs))

    # ------------------------------------------------------------------------------------------- workers

    @activity.defn
    @translate_errors
    async def find_workers(self, input: FindWorkersInput) -> WorkerSetList:
        """The version's workers, and the versions the CI queues or deploys now (read just before deleting)."""
        found = await self.workers.find(input.workflow_name, input.version_id)
        return WorkerSetList(worker_sets=found, deploying_versions=await self._deploying(input.workflow_name))

    async def _deploying(self, workflow_name: str) -> list[str]:
        try:
            deploying: list[str] = await self.client.get_workflow_handle(ci_workflow_id(workflow_name)).query(
                DEPLOYING_QUERY, result_type=list[str]
            )
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return []  # no CI for this workflow (a cleanup started by hand): nothing is queued
            raise
        return deploying

    @activity.defn
    @translate_errors
    async def delete_workers(self, input: DeleteWorkersInput) -> Empty:
        await self.workers.delete(input.worker_set)
        return Empty()

    # ------------------------------------------------------------------------------------------- gates

    @activity.defn
    @translate_errors
    async def observe_workers(self, input: ObserveWorkersInput) -> WorkersObservation:
        """Who polls the version's task queue now (readiness)."""
        return WorkersObservation(
            task_queue=input.task_queue, pollers=await live_pollers(self.client, input.task_queue)
        )

    @activity.defn
    @translate_errors
    async def observe_health(self, input: ObserveHealthInput) -> HealthObservation:
        """Both versions over the same window, and the new version's percentage (which step it is at)."""
        flag = await self._read_flag(input.workflow_name, input.flag_name)
        return HealthObservation(
            new=await evidence.version_health(
                self.client,
                workflow_name=input.workflow_name,
                task_queue=input.new_task_queue,
                since=input.since,
                moved_from=input.old_task_queue,
            ),
            old=await evidence.version_health(
                self.client, workflow_name=input.workflow_name, task_queue=input.old_task_queue, since=input.since
            ),
            percent=general_percent(flag) if flag is not None and not flag.archived else None,
        )

    @activity.defn
    @translate_errors
    async def probe_migrate_back(self, input: ProbeMigrateBackInput) -> MigrateBackEvidence:
        """What the old and the new code say about the states they restore and carry (``--migrate-back``)."""
        return await evidence.migrate_back_evidence(
            self.client,
            workflow_name=input.workflow_name,
            old_task_queue=input.old_task_queue,
            new_task_queue=input.new_task_queue,
        )

    def all(self) -> list[Callable[..., Any]]:
        return [getattr(self, name) for name in self.NAMES]
