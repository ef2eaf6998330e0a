"""What callers (CLI, webhook, dashboard) do with the CI: deploy, steer, and read a merged status."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowQueryFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from diachronic.ci.contracts import (
    FINAL_PHASES,
    MAX_GATE_RUNS,
    STATUS_QUERY,
    CIInput,
    CIStatus,
    Control,
    ControlInput,
    DeployAck,
    DeployOptions,
    DeployRequest,
    DrainState,
    GatesRecord,
    HealthState,
    MigrationCounts,
    MigrationState,
    Phase,
    RollbackInput,
    RolloutStatus,
    rollout_workflow_id,
)
from diachronic.ci.planner.retire import RetireBlocker
from diachronic.ci.workflow import CIWorkflow
from diachronic.contracts import CI_WORKFLOW_TYPE, DEPLOY_SUCCESS_SIGNAL, DeployEvent, RolloutStep, ci_workflow_id
from diachronic.errors import InvalidInput, NotFound
from diachronic.temporal_errors import temporal_errors

T = TypeVar("T")

_RACE_RETRIES = 3


async def _translate(what: str, action: Callable[[], Awaitable[T]]) -> T:
    """Temporal's errors, as ours: a refused control is UpdateRejected in the CI's words; a missing run NotFound."""
    async with temporal_errors(what):
        return await action()


async def deploy(
    client: Client,
    ci_task_queue: str,
    event: DeployEvent,
    options: DeployOptions | None = None,
    *,
    ci_input: CIInput | None = None,
) -> DeployAck:
    """Queue a deployment on ``ci.<workflowName>``, starting the CI workflow (with ``ci_input``) if none runs; the
    CI's answer (queued, or why not) needs a CI worker to take the update (``signal_deploy`` does not)."""
    request = DeployRequest(event=event, options=options or DeployOptions())
    for attempt in range(_RACE_RETRIES):
        operation = WithStartWorkflowOperation(
            CIWorkflow.run,
            ci_input or CIInput(),
            id=ci_workflow_id(event.workflow_name),
            task_queue=ci_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        try:
            return await _translate(
                f"deploy {event.workflow_name}",
                lambda op=operation: client.execute_update_with_start_workflow(  # type: ignore[misc]
                    CIWorkflow.deploy, request, start_workflow_operation=op
                ),
            )
        except NotFound:
            if attempt == _RACE_RETRIES - 1:
                raise  # the CI run kept completing under us: let the caller see it
    raise AssertionError("unreachable")


async def signal_deploy(client: Client, ci_task_queue: str, event: DeployEvent, *, rpc_timeout_s: float) -> None:
    """The original's wire message: signal-with-start of ``workflowCI`` (id ``ci.<workflowName>``) with
    ``diachronic.ci.workflow.deploy.success`` and the deploy event. Temporal records the signal even while no CI
    worker polls (the deployment starts once one does); the CI classifies it then (``planner.deploy``), so the
    sender learns nothing of a duplicate: the webhook's way, where a delivery must never be lost."""
    await _translate(
        f"deploy {event.workflow_name}",
        lambda: client.start_workflow(
            CIWorkflow.run,
            CIInput(),
            id=ci_workflow_id(event.workflow_name),
            task_queue=ci_task_queue,
            start_signal=DEPLOY_SUCCESS_SIGNAL,
            start_signal_args=[event],
            rpc_timeout=timedelta(seconds=rpc_timeout_s),
        ),
    )


async def control(client: Client, workflow_name: str, name: str, reason: str | None = None) -> str:
    """Send a ``Control`` (continue, cancel, pause, resume, promote, abort); refused ones raise InvalidInput."""
    try:
        chosen = Control(name)
    except ValueError:
        raise InvalidInput(f"unknown control {name!r}: choose one of {', '.join(Control)}") from None
    handle = client.get_workflow_handle(ci_workflow_id(workflow_name))
    result: str = await _translate(
        f"{chosen} {workflow_name}",
        lambda: handle.execute_update(chosen.update, ControlInput(reason=reason), result_type=str),
    )
    return result


async def rollback(
    client: Client,
    workflow_name: str,
    *,
    steps: list[RolloutStep] | None = None,
    migrate_back: bool = False,
    reason: str | None = None,
) -> str:
    """Roll the deployment in progress back (``Control.ROLLBACK``): at once, or down ``steps`` (the previous
    version's share rising to 100); ``migrate_back`` moves workflows back when the old code accepts their state."""
    handle = client.get_workflow_handle(ci_workflow_id(workflow_name))
    arg = RollbackInput(reason=reason, steps=steps, migrate_back=migrate_back)
    result: str = await _translate(
        f"rollback {workflow_name}",
        lambda: handle.execute_update(Control.ROLLBACK.update, arg, result_type=str),
    )
    return result


async def _query(client: Client, workflow_id: str, query: str, result_type: type[T]) -> T | None:
    try:
        result: T = await client.get_workflow_handle(workflow_id).query(query, result_type=result_type)
        return result
    except (RPCError, WorkflowQueryFailedError):
        return None


async def _retrying(client: Client, workflow_id: str) -> str | None:
    """Why a step of this workflow waits right now, when Temporal is retrying one of its activities.

    Temporal retries a failed activity attempt by itself (``diachronic.ci.steps.CALL_RETRY``); the workflow, and so
    its own ``last_error``, learns of the failure only once every attempt of the call has failed, which for a
    store that answers slowly (a locked SQLite file waits for its busy timeout) can be half a minute. The pending
    activity's last failure says it at once."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return None
    for pending in description.raw_description.pending_activities:
        failure = pending.last_failure
        if pending.attempt > 1 and failure.message:
            kind = failure.application_failure_info.type if failure.HasField("application_failure_info") else ""
            where = f"{pending.activity_type.name} attempt {pending.attempt - 1} failed, retrying"
            return f"{kind + ': ' if kind else ''}{failure.message} ({where})"
    return None


async def status(client: Client, workflow_name: str) -> CIStatus:
    """The CI's status with the rollout's, migration's and health analysis's live numbers merged in."""
    ci = await _query(client, ci_workflow_id(workflow_name), STATUS_QUERY, CIStatus)
    if ci is None:
        raise NotFound(f"no deployment of {workflow_name!r} was found (is the CI worker running?)")
    updates: dict[str, Any] = {}
    drain_id: str | None = None
    if ci.phase not in (Phase.IDLE, Phase.PREPARING, Phase.AWAITING_CONTINUE) and ci.from_version is not None:
        rollout = await _query(client, rollout_workflow_id(workflow_name), STATUS_QUERY, RolloutStatus)
        if rollout is not None:
            updates |= {
                "rollout_percent": rollout.percent,
                "next_step_at": rollout.next_step_at,
                "steps": rollout.steps,
                "paused": rollout.paused,
                "rollout_history": rollout.history,
                "rollout_frozen": rollout.frozen,
                "last_error": ci.last_error or rollout.stop_detail,
            }
            if rollout.gate is not None and ci.gates is not None:
                runs = [r for r in ci.gates.gate_runs if r.workflow_id != rollout.gate.workflow_id]
                updates["gates"] = ci.gates.model_copy(update={"gate_runs": [*runs, rollout.gate][-MAX_GATE_RUNS:]})
        drain_id = ci.drain_workflow_id
        drain_type = DrainState if ci.non_migratory else MigrationState
        drain = await _query(client, drain_id, STATUS_QUERY, drain_type) if drain_id else None
        if drain is not None:
            updates["migration"] = migration_counts(drain)
            if drain.failure and not updates.get("last_error"):
                updates["last_error"] = drain.failure
        retiring = drain
        if ci.cleanup_workflow_id and ci.cleanup_workflow_id != drain_id:  # a migration handed retiring over
            retiring = await _query(client, ci.cleanup_workflow_id, STATUS_QUERY, DrainState)
        if retiring is not None and retiring.waiting_for == RetireBlocker.DELAYED:
            updates["retire_at"] = retiring.retire_at
    gates: GatesRecord | None = updates.get("gates", ci.gates)
    if gates is not None and gates.health_workflow_id is not None:
        health = await _query(client, gates.health_workflow_id, STATUS_QUERY, HealthState)
        if health is not None:
            updates["gates"] = gates.model_copy(
                update={"health": health.steps, "breach": gates.breach or health.breach}
            )
    if ci.phase not in FINAL_PHASES and not updates.get("last_error", ci.last_error):
        children = [rollout_workflow_id(workflow_name), drain_id] if ci.phase is not Phase.PREPARING else []
        for workflow_id in [ci_workflow_id(workflow_name), *children]:
            if workflow_id and (reason := await _retrying(client, workflow_id)):
                updates["last_error"] = reason
                break
    return ci.model_copy(update=updates)


def migration_counts(drain: DrainState) -> MigrationCounts:
    """The numbers ``status`` shows of a migration (or a cleanup): progress, and how its sweeps are paced."""
    counts = MigrationCounts(
        eligible=drain.eligible, signalled=drain.signalled_total, on_old_queue=drain.running_on_old_queue
    )
    if not isinstance(drain, MigrationState):
        return counts
    return counts.model_copy(
        update={
            "sweeping": drain.sweep.kind.value if drain.sweep else None,
            "swept_rows": drain.sweep.rows if drain.sweep else 0,
            "resent": drain.sweeps.resent,
            "sweeps": drain.sweeps.sweeps,
            "rows_read": drain.sweeps.rows,
            "next_sweep_at": None if drain.sweep else drain.next_sweep_at,
            "pacing": drain.pacing,
            "canary": drain.canary,
        }
    )


async def workflow_names(client: Client) -> list[str]:
    """Every workflow name that has a CI workflow (needs visibility: the dev server or a cluster)."""
    names: set[str] = set()
    async for execution in client.list_workflows(f'WorkflowType="{CI_WORKFLOW_TYPE}"'):
        names.add(execution.id.removeprefix("ci."))
    return sorted(names)
