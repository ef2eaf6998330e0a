"""Waiting for a deployment to end, for pipelines: ``diachronic deploy --wait`` and ``diachronic status --wait``.

Each way a deployment ends has its own exit code (the table is in docs/pipeline.md), so a pipeline step can
branch on it. The deployment is found in the CI's state (``db`` query) by its version and the time of its deploy
event: queued, running, or ended in the CI's history; a CI run that completed and was replaced by a newer one is
found among the workflow's last runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from diachronic.ci.contracts import DB_QUERY, FINAL_PHASES, CIState, Deployment, Phase
from diachronic.contracts import DeployEvent, ci_workflow_id
from diachronic.errors import BackendError, NotFound

__all__ = ["EXIT_CODES", "Ending", "Located", "ending_of", "locate", "wait_for_end"]

EARLIER_RUNS = 5  # CI runs looked at when the deployment is not in the newest one


class Ending(StrEnum):
    COMPLETED = "completed"  # the new version took all new starts and the previous one was retired or is draining
    FAILED = "failed"  # a step could not succeed: the typed reason is in the deployment's end
    ABORTED = "aborted"  # by a gate, the health analysis or a human: new starts went back to the previous version
    CANCELLED = "cancelled"  # a human cancelled it: the automation stopped, flags stayed as they were
    STOPPED = "stopped"  # a human edited the percentage by hand: the automation stepped aside
    TIMEOUT = "timeout"  # still going when the wait's timeout passed (the deployment goes on)


EXIT_CODES: dict[Ending, int] = {
    Ending.COMPLETED: 0,
    Ending.FAILED: 3,
    Ending.ABORTED: 4,
    Ending.CANCELLED: 5,
    Ending.STOPPED: 6,
    Ending.TIMEOUT: 7,
}

_ENDINGS = {
    Phase.COMPLETED: Ending.COMPLETED,
    Phase.DUPLICATE: Ending.COMPLETED,  # the version already was the newest live version: nothing to do
    Phase.FAILED: Ending.FAILED,
    Phase.ABORTED: Ending.ABORTED,
    Phase.CANCELLED: Ending.CANCELLED,
    Phase.STOPPED: Ending.STOPPED,
}


def ending_of(deployment: Deployment) -> Ending | None:
    """How the deployment ended (None: it has not)."""
    if deployment.phase not in FINAL_PHASES:
        return None
    return _ENDINGS[deployment.phase]


@dataclass(frozen=True)
class Located:
    """Where the deployment is: waiting in the queue (``position`` from 1), running, ended, or not found."""

    where: Literal["queued", "running", "ended", "missing"]
    event: DeployEvent | None = None
    deployment: Deployment | None = None
    position: int | None = None


def _matches(event: DeployEvent, version_id: str | None, event_time: datetime | None) -> bool:
    return (version_id is None or event.version_id == version_id) and (
        event_time is None or event.event_time == event_time
    )


def locate(state: CIState, version_id: str | None = None, event_time: datetime | None = None) -> Located:
    """Find the deployment of ``version_id`` (whose deploy event has ``event_time``, when given) in the CI's
    state; without a version, the one running now, else the next queued, else the last one. Pure."""
    current = state.current
    if current is not None and _matches(current.request.event, version_id, event_time):
        return Located("running", current.request.event, current)
    for position, request in enumerate(state.queue, start=1):
        if _matches(request.event, version_id, event_time):
            return Located("queued", request.event, position=position)
    for deployment in reversed(state.history):
        if _matches(deployment.request.event, version_id, event_time):
            return Located("ended", deployment.request.event, deployment)
    return Located("missing")


async def _states(client: Client, workflow_name: str, *, earlier: bool) -> list[CIState]:
    """The newest CI run's state; with ``earlier``, also the states of the runs before it (newest first)."""
    workflow_id = ci_workflow_id(workflow_name)
    run_ids: list[str | None] = [None]
    if earlier:
        query = f'WorkflowId="{workflow_id}"'
        run_ids = [e.run_id async for e in client.list_workflows(query, limit=EARLIER_RUNS)]
    states: list[CIState] = []
    for run_id in run_ids:
        try:
            handle = client.get_workflow_handle(workflow_id, run_id=run_id)
            states.append(await handle.query(DB_QUERY, result_type=CIState))
        except WorkflowQueryFailedError as error:
            raise BackendError(f"the CI of {workflow_name} did not answer: {error}") from None
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise BackendError(f"the CI of {workflow_name}: Temporal answered {error.message}") from None
    if not states and not earlier:
        raise NotFound(f"no deployment of {workflow_name!r} was found (is the CI worker running?)")
    return states


async def _locate(client: Client, workflow_name: str, version_id: str | None, event_time: datetime | None) -> Located:
    (state,) = await _states(client, workflow_name, earlier=False)
    found = locate(state, version_id, event_time)
    if found.where == "missing" and version_id is not None:
        for earlier in await _states(client, workflow_name, earlier=True):
            found = locate(earlier, version_id, event_time)
            if found.where != "missing":
                break
    return found


async def wait_for_end(
    client: Client,
    workflow_name: str,
    *,
    version_id: str | None = None,
    event_time: datetime | None = None,
    timeout_s: float | None = None,
    poll_s: float = 1.0,
    progress: Callable[[Located], None] = lambda _: None,
    warn: Callable[[str], None] = lambda _: None,
) -> tuple[Ending, Located]:
    """Wait until the deployment ends (see ``locate`` for which one); ``progress`` hears of each change of
    place or phase. Returns how it ended (``TIMEOUT`` when ``timeout_s`` passed first) and where it was.

    Once the deployment was found, a CI that cannot be read for a while (its worker restarting, Temporal
    unavailable) does not end the wait: ``warn`` hears of it and the wait goes on until the timeout."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    found = await _locate(client, workflow_name, version_id, event_time)
    if found.event is not None:  # follow this one deployment, whatever comes after it
        version_id, event_time = found.event.version_id, found.event.event_time
    last: tuple[str, Phase | None, int | None] | None = None
    trouble: str | None = None
    while True:
        if found.where == "missing":
            what = f"version {version_id}" if version_id else "any deployment"
            raise NotFound(f"no deployment of {workflow_name!r} ({what}) was found in the CI's recent history")
        if found.where == "ended":
            assert found.deployment is not None
            ending = ending_of(found.deployment)
            assert ending is not None
            return ending, found
        seen = (found.where, found.deployment.phase if found.deployment else None, found.position)
        if seen != last:
            progress(found)
            last = seen
        if deadline is not None and time.monotonic() >= deadline:
            return Ending.TIMEOUT, found
        wait = poll_s if deadline is None else max(min(poll_s, deadline - time.monotonic()), 0)
        await asyncio.sleep(wait)
        try:
            found = await _locate(client, workflow_name, version_id, event_time)
        except BackendError as error:  # a CI worker restarting, Temporal unavailable: the deployment goes on
            if error.message != trouble:
                warn(f"cannot read the CI's state now, still waiting: {error.message}")
                trouble = error.message
            continue
        trouble = None
