"""The signaler: start, signal and update workflows on the task queue the flags choose (newest enabled version wins).

``Signaler`` is the Python client (in-process, no HTTP); ``diachronic.http`` serves the same decisions at
``POST /instruction`` with the original's ``{action, args}`` bodies. ``route`` and ``start_routed`` are the
short forms used by the CLI and the demo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio.client import Client

from diachronic.contracts import Contract, VersionInfo
from diachronic.errors import AlreadyStarted, InvalidInput, TimedOut, UpdateRejected
from diachronic.flags import FlagStore
from diachronic.signaler.client import DEFAULT_UPDATE_TIMEOUT, Signaler
from diachronic.signaler.errors import InvalidInstruction, TaskQueueNotFound
from diachronic.signaler.instructions import (
    BatchFailure,
    BatchResult,
    Instruction,
    RetryOptions,
    SignalArgs,
    SignalResult,
    SignalWithStartArgs,
    SignalWithStartResult,
    StartArgs,
    StartResult,
    UpdateArgs,
    UpdateOrStartArgs,
    parse_instruction,
)

__all__ = [
    "DEFAULT_UPDATE_TIMEOUT",
    "AlreadyStarted",
    "BatchFailure",
    "BatchResult",
    "Instruction",
    "InvalidInstruction",
    "RetryOptions",
    "SignalArgs",
    "SignalResult",
    "SignalWithStartArgs",
    "SignalWithStartResult",
    "Signaler",
    "StartArgs",
    "StartResult",
    "Started",
    "TaskQueueNotFound",
    "TimedOut",
    "UpdateArgs",
    "UpdateOrStartArgs",
    "UpdateRejected",
    "parse_instruction",
    "route",
    "start_routed",
]


class Started(Contract):
    workflow_id: str
    run_id: str
    task_queue: str
    version_id: str


async def route(flags: FlagStore, workflow_name: str, workflow_id: str, *, is_test: bool = False) -> VersionInfo:
    """The version a new workflow with this id starts on; TaskQueueNotFound (a NotFound) when none is enabled."""
    version = await flags.route(workflow_name, workflow_id, is_test=is_test)
    if version is None:
        raise TaskQueueNotFound(f"no enabled version of {workflow_name!r}: deploy one first")
    return version


async def start_routed(
    client: Client,
    flags: FlagStore,
    *,
    workflow_name: str,
    workflow_id: str,
    args: Sequence[Any] = (),
    is_test: bool = False,
) -> Started:
    """Start ``workflow_name`` (the workflow type) with ``workflow_id`` on the queue the flags choose.

    AlreadyStarted (an InvalidInput) if that id is running."""
    if not workflow_id:
        raise InvalidInput("a workflow id is required: it decides the routing (stickiness)")
    started = await Signaler(client, flags).start(
        StartArgs(workflow_type=workflow_name, workflow_id=workflow_id, args=list(args), is_test=is_test)
    )
    return Started(
        workflow_id=started.workflow_id,
        run_id=started.run_id,
        task_queue=started.task_queue,
        version_id=started.version_id or "",
    )
