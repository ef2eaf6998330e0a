"""What Temporal's own records say about a version, for the gates (docs/gates.md): how its runs ended, which of
its workflows are stuck, which failed after moving to it, and which states its code restores.

Reads only (visibility counts and lists, the migrate SDK's snapshot query); the planner decides
(``diachronic.ci.planner.health``, ``diachronic.ci.planner.rollback``). Every read is bounded: counts, and lists
of at most ``FAILED_SCAN`` rows, whatever the number of workflows.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from diachronic.ci.contracts import MAX_EXAMPLES, MigrateBackEvidence, VersionHealth
from diachronic.migrate import SNAPSHOT_QUERY, Snapshot
from diachronic.temporal import visibility_string, visibility_time

__all__ = ["FAILED_SCAN", "migrate_back_evidence", "version_health"]

FAILED_SCAN = 100
"""Failing runs of the new version checked for having moved there, per look."""
_MOVED_ROWS = 1000
_STATE_SAMPLE = 3
_FAILING = '("Failed", "TimedOut", "Terminated")'
_FAILING_TASKS = 'TemporalReportedProblems = "category=WorkflowTaskFailed"'  # not "category=WorkflowTaskTimedOut"
QUERY_TIMEOUT = timedelta(seconds=5)
"""A query waits for a worker of the run's queue to answer (a stuck run never does): none within this, and the code
is not asked."""
_NO_ANSWER = (
    RPCStatusCode.NOT_FOUND,
    RPCStatusCode.INVALID_ARGUMENT,
    RPCStatusCode.FAILED_PRECONDITION,
    RPCStatusCode.DEADLINE_EXCEEDED,  # no worker answered in time
    RPCStatusCode.CANCELLED,  # the client gave up waiting (QUERY_TIMEOUT)
)
_CLOSED = ("Completed", "Failed", "TimedOut", "Terminated", "Canceled")  # ContinuedAsNew is not an outcome


def _scope(workflow_name: str, task_queue: str) -> str:
    return f"WorkflowType={visibility_string(workflow_name)} AND TaskQueue={visibility_string(task_queue)}"


async def version_health(
    client: Client, *, workflow_name: str, task_queue: str, since: datetime, moved_from: str | None = None
) -> VersionHealth:
    """The runs of ``workflow_name`` on ``task_queue`` closed since ``since``, by status; its stuck workflows;
    with ``moved_from`` (the previous version's queue), those that failed here after moving from there."""
    scope = _scope(workflow_name, task_queue)
    closed_since = f"CloseTime >= {visibility_time(since)}"
    grouped = await client.count_workflows(f"{scope} AND {closed_since} GROUP BY ExecutionStatus")
    by_status = {str(group.group_values[0]): group.count for group in grouped.groups}
    problems = await _task_problems(client, scope)
    failing = f"ExecutionStatus IN {_FAILING} AND {closed_since}"
    stuck = f' OR (ExecutionStatus="Running" AND {_FAILING_TASKS})' if problems is not None else ""
    examples = [w.id async for w in client.list_workflows(f"{scope} AND (({failing}){stuck})", limit=MAX_EXAMPLES)]
    failures = sum(by_status.get(status, 0) for status in ("Failed", "TimedOut", "Terminated"))
    moved = (
        await _moved_then_failed(client, workflow_name, scope, failing, moved_from) if moved_from and failures else 0
    )
    return VersionHealth(
        task_queue=task_queue,
        closed=sum(by_status.get(status, 0) for status in _CLOSED),
        failed=by_status.get("Failed", 0),
        timed_out=by_status.get("TimedOut", 0),
        terminated=by_status.get("Terminated", 0),
        task_problems=problems,
        migrated_failed=moved,
        examples=examples,
    )


async def _task_problems(client: Client, scope: str) -> int | None:
    """Running workflows Temporal flagged for repeated workflow-task failures; None on a server without the flag.
    Only failures (the code raised, or is not deterministic): a workflow task that timed out (Temporal's other
    category) is a busy worker, and a migration wave on a loaded machine made healthy versions abort on it."""
    try:
        counted = await client.count_workflows(f'{scope} AND ExecutionStatus="Running" AND {_FAILING_TASKS}')
    except RPCError as error:
        if error.status == RPCStatusCode.INVALID_ARGUMENT:
            return None  # the server has no TemporalReportedProblems (before 1.28, or visibility without it)
        raise
    return counted.count


async def _moved_then_failed(client: Client, workflow_name: str, scope: str, failing: str, moved_from: str) -> int:
    """Of the failing workflows (at most ``FAILED_SCAN``), those that once ran on ``moved_from``: the migration
    moved them here (a run continued as new there, with the same workflow id)."""
    failed_ids = sorted({w.id async for w in client.list_workflows(f"{scope} AND {failing}", limit=FAILED_SCAN)})
    if not failed_ids:
        return 0
    ids = ", ".join(visibility_string(workflow_id) for workflow_id in failed_ids)
    query = f'{_scope(workflow_name, moved_from)} AND ExecutionStatus="ContinuedAsNew" AND WorkflowId IN ({ids})'
    return len({w.id async for w in client.list_workflows(query, limit=_MOVED_ROWS)})


async def migrate_back_evidence(
    client: Client, *, workflow_name: str, old_task_queue: str, new_task_queue: str
) -> MigrateBackEvidence:
    """The state versions of the code running on ``new_task_queue``, and those the old code declares it restores
    (asked of a run on ``old_task_queue``: a running one, else a closed one, which its workers replay)."""
    running_new = f'{_scope(workflow_name, new_task_queue)} AND ExecutionStatus="Running"'
    running = (await client.count_workflows(running_new)).count
    if running == 0:
        return MigrateBackEvidence(running_on_new_queue=0)
    new_versions = set()
    async for execution in client.list_workflows(running_new, limit=_STATE_SAMPLE):
        snapshot = await _snapshot(client, execution.id, execution.run_id)
        if isinstance(snapshot, Snapshot) and snapshot.state_version is not None:
            new_versions.add(snapshot.state_version)
            break  # every run of one code declares the same state version
    old_scope = _scope(workflow_name, old_task_queue)
    asked: Snapshot | str = f"no workflow ever ran on {old_task_queue}"
    for query in (f'{old_scope} AND ExecutionStatus="Running"', old_scope):
        async for execution in client.list_workflows(query, limit=1):
            asked = await _snapshot(client, execution.id, execution.run_id)
        if isinstance(asked, Snapshot):
            break
    return MigrateBackEvidence(
        old_accepts=asked.accepts if isinstance(asked, Snapshot) else None,
        new_state_versions=sorted(new_versions),
        running_on_new_queue=running,
        detail=asked if isinstance(asked, str) else None,
    )


async def _snapshot(client: Client, workflow_id: str, run_id: str | None) -> Snapshot | str:
    """The migrate SDK's snapshot of one run, or why it could not be had."""
    try:
        snapshot: Snapshot = await client.get_workflow_handle(workflow_id, run_id=run_id).query(
            SNAPSHOT_QUERY, result_type=Snapshot, rpc_timeout=QUERY_TIMEOUT
        )
    except WorkflowQueryFailedError as error:
        return f"{workflow_id} did not answer {SNAPSHOT_QUERY}: {error} (is it a migratable workflow?)"
    except RPCError as error:
        if error.status in _NO_ANSWER:
            return f"{workflow_id} could not be queried: {error.message}"
        raise
    return snapshot
