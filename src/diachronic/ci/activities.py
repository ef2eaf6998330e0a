"""The CI's activities: I/O and nothing else. Decisions live in ``diachronic.ci.planner``.

Every activity takes one contract model and returns one. Errors leave an activity only as Temporal
``ApplicationError`` with ``type`` = the error's stable name (``translate_errors``), so workflows match on names.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

from pydantic import ValidationError
from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import (
    ListWorkflowExecutionsRequest,
    ListWorkflowExecutionsResponse,
    SignalWorkflowExecutionRequest,
)
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from diachronic.ci import evidence
from diachronic.ci.contracts import (
    CANARY_QUERY,
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
    ObserveDeploymentInput,
    ObserveHealthInput,
    ObserveWorkersInput,
    ProbeMigrateBackInput,
    RunningCount,
    SetPercentInput,
    SweepInput,
    WorkerSetList,
    WorkersObservation,
)
from diachronic.ci.planner import canary, migration, rollout
from diachronic.ci.planner.sweep import SweepProgress
from diachronic.contracts import MIGRATE_SIGNAL, ci_workflow_id
from diachronic.errors import BackendError, ConcurrentEdit, DiachronicError, InvalidInput
from diachronic.flags import FlagStore, VersionFlag
from diachronic.flags.evaluation import general_percent
from diachronic.temporal import count_narrowed, live_pollers, narrowed, visibility_string
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


HEARTBEAT_EVERY_S = 2.0
"""Between two heartbeats while a page is read or signalled (each page also ends with one): a slow page on a busy
machine never looks dead, and a worker that died is noticed within the heartbeat timeout."""


class Heartbeat:
    """Heartbeats the latest details every ``HEARTBEAT_EVERY_S`` while the activity works, and at once on ``beat``:
    what Temporal holds is always where a retried attempt would go on from."""

    def __init__(self, details: SweepProgress) -> None:
        self.details = details
        self._ticker: asyncio.Task[None] | None = None

    def beat(self, details: SweepProgress) -> None:
        self.details = details
        activity.heartbeat(details)

    async def _tick(self) -> None:
        while True:
            activity.heartbeat(self.details)
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    async def __aenter__(self) -> Heartbeat:
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._ticker is not None
        self._ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker


def new_watermark() -> datetime:
    """When a sweep began, by this worker's clock (``planner.migration.Coverage`` allows for its difference with
    Temporal's)."""
    return datetime.now(UTC)


def sweep_query(task_queue: str, workflow_name: str, since: datetime | None) -> str:
    """The running workflows of the type on the old queue (a recent sweep: started since its watermark)."""
    query = f"WorkflowType={visibility_string(workflow_name)} AND {running_query(task_queue)}"
    if since is None:
        return query
    return f"{query} AND StartTime >= {visibility_string(since.isoformat())}"


def sweep_start(input: SweepInput, watermark: Callable[[], datetime]) -> SweepProgress:
    """Where an attempt of the migrate activity starts: the last heartbeat of an earlier attempt of this call, else
    the input's cursor; a sweep that starts takes its ``watermark``. Shared with the simulation's world."""
    details = activity.info().heartbeat_details if activity.in_activity() else ()
    if details:
        last = SweepProgress.model_validate(details[0])
        return last.model_copy(update={"resumed_at_page": last.pages})
    return SweepProgress(cursor=input.cursor, watermark=None if input.cursor else watermark())


def _encode(token: bytes) -> str | None:
    return base64.urlsafe_b64encode(token).decode() if token else None


def _decode(cursor: str | None) -> bytes:
    if cursor is None:
        return b""
    try:
        return base64.urlsafe_b64decode(cursor.encode())
    except ValueError:
        raise InvalidInput(f"a sweep's cursor is visibility's page token in base64, not {cursor!r}") from None


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
        "migrate_sweep",
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
    async def migrate_sweep(self, input: SweepInput) -> SweepProgress:
        """Go on with a sweep of the old queue from its cursor, for up to ``input.pages`` pages: signal the runs of
        each page that the planner selects while the next page is read. The progress is heartbeated after each page
        and every few seconds in between, so a retried attempt goes on from the last page reported. Before each page
        the flags are read again: if they no longer route as the workflow's did, the call stops there."""
        progress = sweep_start(input, new_watermark)
        if progress.call_done(input.pages):
            return progress
        cohort = input.cohort
        narrowing = cohort.options.query if cohort is not None else None
        query = narrowed(sweep_query(input.from_task_queue, input.workflow_name, input.since), narrowing)
        if cohort is not None and progress.candidates is None:  # a retried attempt has them in its heartbeat
            candidates = await count_narrowed(
                self.client, sweep_query(input.from_task_queue, input.workflow_name, None), narrowing, CANARY_QUERY
            )
            progress = canary.start_cohort_call(cohort, progress, candidates)
        to_queue = input.to_version.task_queue
        routing = migration.routing_key(input.flags)
        ahead: asyncio.Task[ListWorkflowExecutionsResponse] | None = None
        async with Heartbeat(progress) as heartbeat:
            page = await self._page(query, progress.cursor, input.batch_size)
            try:
                for read in range(progress.pages + 1, input.pages + 1):
                    if migration.routing_key(await self.flags.list_version_flags(input.workflow_name)) != routing:
                        return progress.model_copy(update={"stale": True})  # the workflow reads them again
                    token = page.next_page_token
                    if token and read < input.pages:  # read the next page while this one is signalled
                        ahead = asyncio.create_task(self._page(query, _encode(token), input.batch_size))
                    runs = [
                        migration.RunOnQueue(
                            e.execution.workflow_id, e.execution.run_id, e.type.name, e.start_time.ToDatetime(UTC)
                        )
                        for e in page.executions
                    ]
                    chosen = migration.select_runs(
                        runs,
                        input.flags,
                        workflow_name=input.workflow_name,
                        to_task_queue=to_queue,
                        covered=input.covered,
                        recheck=input.recheck,
                        at_most=canary.call_budget(cohort, progress) if cohort is not None else None,
                    )
                    outcomes = await self._signal_page(chosen, to_queue, input.concurrency)
                    full = cohort is not None and canary.call_budget(cohort, progress) <= outcomes["signalled"]
                    progress = progress.after_page(
                        cursor=None if full else _encode(token),  # a full cohort ends its sweep: the rest waits
                        rows=len(runs),
                        eligible=chosen.eligible,
                        signalled=outcomes["signalled"],
                        resent=outcomes["resent"],
                        gone=outcomes["gone"],
                        failed=outcomes["failed"],
                    )
                    heartbeat.beat(progress)
                    if ahead is None or full:
                        break
                    page, ahead = await ahead, None
            finally:
                if ahead is not None:
                    ahead.cancel()
        return progress

    async def _page(self, query: str, cursor: str | None, size: int) -> ListWorkflowExecutionsResponse:
        request = ListWorkflowExecutionsRequest(
            namespace=self.client.namespace, query=query, page_size=size, next_page_token=_decode(cursor)
        )
        return await self.client.workflow_service.list_workflow_executions(request, retry=True)

    async def _signal_page(self, chosen: migration.Selection, task_queue: str, concurrency: int) -> Counter[str]:
        """Signal each run (with its request id); outcomes counted: signalled (first time), resent, gone, failed."""
        semaphore = asyncio.Semaphore(concurrency)
        payloads = await self.client.data_converter.encode([{"taskQueue": task_queue}])
        outcomes: Counter[str] = Counter()

        async def one(run: migration.RunOnQueue, accepted: str) -> None:
            async with semaphore:
                request = SignalWorkflowExecutionRequest(
                    namespace=self.client.namespace,
                    workflow_execution=WorkflowExecution(workflow_id=run.workflow_id, run_id=run.run_id),
                    signal_name=MIGRATE_SIGNAL,
                    identity=self.client.identity,
                    request_id=migrate_request_id(task_queue, run.run_id),
                )
                request.input.payloads.extend(payloads)
                try:
                    await self.client.workflow_service.signal_workflow_execution(request, retry=True)
                except RPCError as error:
                    if error.status == RPCStatusCode.NOT_FOUND:
                        outcomes["gone"] += 1  # it closed or left the old queue: nothing to migrate
                        return
                    activity.logger.warning("migrate signal to %s failed: %s", run.workflow_id, error.message)
                    outcomes["failed"] += 1
                    return
                outcomes[accepted] += 1

        await asyncio.gather(
            *(one(run, "signalled") for run in chosen.first), *(one(run, "resent") for run in chosen.again)
        )
        return outcomes

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
