"""The freeze store: one small workflow per scope (type ``diachronicFreeze``, id ``freeze.<workflowName>`` or
``freeze.*`` for every workflow) holds a freeze set by ``diachronic freeze`` until its time, then ends; ``diachronic
unfreeze`` lifts it earlier. Temporal keeps it, so every process (CLI, CI worker, dashboard) sees the same freezes,
and a CI run that completes between deployments forgets nothing.

The CI and its rollout read the freezes in force with the ``read_freezes`` activity (the store's freezes plus the
configured recurring windows; ``freeze_in_force`` in a workflow) and the planner decides
(``diachronic.ci.planner.freeze``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import Field
from temporalio import activity, workflow
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from diachronic.ci.activities import translate_errors
    from diachronic.ci.planner.freeze import ALL, Freeze, FreezeWindow, active_freeze
    from diachronic.ci.steps import run_step
    from diachronic.contracts import Contract
    from diachronic.errors import InvalidInput, NotFound
    from diachronic.temporal_errors import temporal_errors

__all__ = [
    "FREEZE_WORKFLOW_TYPE",
    "FreezeActivities",
    "FreezeReading",
    "FreezeRequest",
    "FreezeWorkflow",
    "LiftRequest",
    "freeze_in_force",
    "freeze_workflow_id",
    "lift_freeze",
    "list_freezes",
    "read_freezes",
    "set_freeze",
]

FREEZE_WORKFLOW_TYPE = "diachronicFreeze"
SET_FREEZE_UPDATE = "diachronic.freeze.set"
LIFT_FREEZE_UPDATE = "diachronic.freeze.lift"
FREEZE_QUERY = "freeze"
START_GRACE_S = 60.0
READ_BUDGET_S = 600.0  # reading the freezes may keep failing this long; then nothing is held


def freeze_workflow_id(scope: str) -> str:
    return f"freeze.{scope}"


class FreezeRequest(Contract):
    until: datetime
    reason: str = Field(min_length=1, max_length=500)


class LiftRequest(Contract):
    reason: str | None = Field(default=None, max_length=500)


class FreezeRun(Contract):
    scope: str


@workflow.defn(name=FREEZE_WORKFLOW_TYPE)
class FreezeWorkflow:
    """Holds one scope's freeze until it lifts (its time passes, or ``lift``); a new ``set`` replaces it."""

    @workflow.init
    def __init__(self, run: FreezeRun) -> None:
        self.scope = run.scope
        self.freeze: Freeze | None = None
        self.lifted = False
        self._changed = False

    @workflow.run
    async def run(self, run: FreezeRun) -> Freeze | None:
        with contextlib.suppress(asyncio.TimeoutError):  # a start whose freeze was refused ends by itself
            await workflow.wait_condition(lambda: self.freeze is not None or self.lifted, timeout=START_GRACE_S)
        while not self.lifted and self.freeze is not None and self.freeze.until > workflow.now():
            self._changed = False
            remaining = (self.freeze.until - workflow.now()).total_seconds()
            with contextlib.suppress(asyncio.TimeoutError):
                await workflow.wait_condition(lambda: self._changed or self.lifted, timeout=remaining)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return None if self.lifted else self.freeze

    @workflow.update(name=SET_FREEZE_UPDATE)
    def set(self, request: FreezeRequest) -> Freeze:
        self.freeze = Freeze(scope=self.scope, until=request.until, reason=request.reason)
        self._changed = True
        return self.freeze

    @set.validator
    def _validate_set(self, request: FreezeRequest) -> None:
        if request.until <= workflow.now():
            raise ValueError(f"--until {request.until.isoformat()} is not in the future")
        if self.lifted:
            raise ValueError("this freeze was just lifted: freeze again")

    @workflow.update(name=LIFT_FREEZE_UPDATE)
    def lift(self, request: LiftRequest) -> Freeze | None:
        self.lifted = True
        return self.freeze

    @workflow.query(name=FREEZE_QUERY)
    def current(self) -> Freeze | None:
        """The freeze in force (None: lifted, or not set yet)."""
        return None if self.lifted else self.freeze


async def set_freeze(client: Client, task_queue: str, scope: str, until: datetime, reason: str) -> Freeze:
    """Freeze ``scope`` (a workflow name or ``*``) until ``until``; replaces a freeze already in force."""
    Freeze(scope=scope, until=until, reason=reason)  # refuse a bad scope or reason before Temporal sees it
    if until <= datetime.now(UTC):  # the store refuses it too; refused here, no store workflow is even started
        raise InvalidInput(f"--until {until.isoformat()} is not in the future")
    operation = WithStartWorkflowOperation(
        FreezeWorkflow.run,
        FreezeRun(scope=scope),
        id=freeze_workflow_id(scope),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    async with temporal_errors(f"freeze {scope}"):
        freeze: Freeze = await client.execute_update_with_start_workflow(
            FreezeWorkflow.set, FreezeRequest(until=until, reason=reason), start_workflow_operation=operation
        )
    return freeze


async def lift_freeze(client: Client, scope: str, reason: str | None = None) -> Freeze:
    """Lift ``scope``'s freeze; NotFound when none is in force."""
    handle = client.get_workflow_handle(freeze_workflow_id(scope))
    lifted: Freeze | None
    try:
        async with temporal_errors(f"unfreeze {scope}"):
            lifted = await handle.execute_update(FreezeWorkflow.lift, LiftRequest(reason=reason))
    except NotFound:
        lifted = None
    if lifted is None:
        raise NotFound(f"{'every workflow' if scope == ALL else scope} is not frozen")
    return lifted


async def _current(client: Client, scope: str) -> Freeze | None:
    handle = client.get_workflow_handle(freeze_workflow_id(scope))
    try:
        async with temporal_errors(f"read the freeze of {scope}"):
            description = await handle.describe()
            if description.status != WorkflowExecutionStatus.RUNNING:
                return None
            found: Freeze | None = await handle.query(FREEZE_QUERY, result_type=Freeze | None)  # type: ignore[arg-type]
            return found
    except NotFound:
        return None


async def read_freezes(client: Client, workflow_name: str) -> list[Freeze]:
    """The store's freezes that apply to ``workflow_name``: its own and the one of every workflow."""
    found = [await _current(client, scope) for scope in (workflow_name, ALL)]
    return [freeze for freeze in found if freeze is not None]


async def list_freezes(client: Client) -> list[Freeze]:
    """Every freeze the store holds (needs visibility: the dev server or a cluster)."""
    query = f'WorkflowType="{FREEZE_WORKFLOW_TYPE}" AND ExecutionStatus="Running"'
    async with temporal_errors("list the freezes"):
        scopes = sorted([e.id.removeprefix("freeze.") async for e in client.list_workflows(query)])
    found = [await _current(client, scope) for scope in scopes]
    return [freeze for freeze in found if freeze is not None]


class FreezeReading(Contract):
    """What the CI observes about freezes: the store's, and the configured recurring windows."""

    freezes: list[Freeze]
    windows: list[FreezeWindow]


class ReadFreezesInput(Contract):
    workflow_name: str


class FreezeActivities:
    """Bound to the Temporal client and the configured windows (``DIACHRONIC_FREEZE_WINDOWS``). Each activity's name
    is its method's name, listed in ``NAMES`` (as ``CIActivities``)."""

    NAMES: ClassVar[tuple[str, ...]] = ("read_freezes",)

    def __init__(self, client: Client, windows: list[FreezeWindow]) -> None:
        self.client = client
        self.windows = windows

    @activity.defn
    @translate_errors
    async def read_freezes(self, input: ReadFreezesInput) -> FreezeReading:
        return FreezeReading(freezes=await read_freezes(self.client, input.workflow_name), windows=self.windows)

    def all(self) -> list[Callable[..., Any]]:
        return [getattr(self, name) for name in self.NAMES]


async def freeze_in_force(workflow_name: str) -> Freeze | None:
    """In a workflow: the freeze in force for ``workflow_name`` now, the one that lifts last (None: no freeze).
    Freezes that cannot be read within ``READ_BUDGET_S`` hold nothing (logged): a freeze store that is down must not
    stop every deployment."""
    try:
        reading = await run_step(
            FreezeActivities.read_freezes, ReadFreezesInput(workflow_name=workflow_name), budget_s=READ_BUDGET_S
        )
    except ApplicationError as error:
        workflow.logger.warning("the freezes of %s cannot be read (%s): not held", workflow_name, error.message)
        return None
    return active_freeze(workflow.now(), workflow_name, reading.freezes, reading.windows)
