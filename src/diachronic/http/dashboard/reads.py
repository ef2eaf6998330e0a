"""Reading what the dashboard shows, without letting many viewers or a stuck CI slow it down.

A query to a workflow whose worker is gone waits about 30 s before Temporal gives up; a page that polls every
second must not wait with it. ``Coalesced`` runs at most one read per key at a time (however many tabs poll),
reuses a result younger than ``fresh_s``, and lets a caller wait at most its budget: then it answers with the last
known result (its ``readAt`` tells its age) while the read goes on in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Generic, TypeVar

from temporalio.client import Client

from diachronic.ci import client as ci
from diachronic.ci.contracts import CIStatus
from diachronic.errors import DiachronicError, TimedOut
from diachronic.flags import FlagStore, VersionFlag
from diachronic.flags.evaluation import general_percent
from diachronic.http.dashboard.models import Routing, VersionView, WorkflowView
from diachronic.http.dashboard.shares import Shares, has_dark_deploy, routing_shares
from diachronic.temporal_errors import temporal_errors

__all__ = ["Coalesced", "read_names", "read_view"]

V = TypeVar("V")


class Coalesced(Generic[V]):
    """One read per key at a time, shared by every caller; results (or our errors) kept for slow moments."""

    def __init__(
        self,
        read: Callable[[str], Awaitable[V]],
        *,
        fresh_s: float,
        timeout_s: float,
        what: str,
        max_entries: int = 1000,
    ) -> None:
        self._read = read
        self._fresh_s = fresh_s
        self._timeout_s = timeout_s
        self._what = what
        self._max_entries = max_entries
        self._tasks: dict[str, tuple[int, asyncio.Task[V | DiachronicError], float]] = {}
        self._last: dict[str, tuple[int, float, V | DiachronicError]] = {}
        self._seq = 0

    async def get(self, key: str, *, budget_s: float) -> V | DiachronicError | None:
        """The newest result for ``key``; None when the read takes longer than ``budget_s`` and none is known."""
        last = self._last.get(key)
        if last is not None and time.monotonic() - last[1] < self._fresh_s:
            return last[2]
        running = self._tasks.get(key)
        if running is None:
            self._seq += 1
            running = (self._seq, asyncio.create_task(self._run(key, self._seq)), time.monotonic())
            self._tasks[key] = running
        _, task, started = running
        # A read that already used up a caller's budget does not hold up the next caller: it gets the last result
        # at once, so one stuck workflow costs the page one slow answer, not one per refresh.
        wait = budget_s - (time.monotonic() - started)
        if not task.done() and wait <= 0:
            return last[2] if last is not None else None
        try:
            return await asyncio.wait_for(asyncio.shield(task), max(wait, 0))
        except TimeoutError:
            return last[2] if last is not None else None

    def invalidate(self, key: str) -> None:
        """The next ``get`` reads anew (after a control): a read already running is not joined any more."""
        self._tasks.pop(key, None)
        last = self._last.get(key)
        if last is not None:
            self._last[key] = (last[0], float("-inf"), last[2])

    async def _run(self, key: str, seq: int) -> V | DiachronicError:
        result: V | DiachronicError
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await self._read(key)
        except TimeoutError:
            waited = f"no answer within {self._timeout_s:g} s (is the CI worker running?)"
            result = TimedOut(f"{self._what} {key}: {waited}")
        except DiachronicError as error:
            result = error
        finally:
            if self._tasks.get(key, (None,))[0] == seq:
                del self._tasks[key]
        previous = self._last.get(key)
        if previous is None or previous[0] < seq:  # an older read finishing late never hides a newer one
            self._last.pop(key, None)
            self._last[key] = (seq, time.monotonic(), result)
            while len(self._last) > self._max_entries:
                del self._last[next(iter(self._last))]
        return result

    async def close(self) -> None:
        tasks = [task for _, task, _ in self._tasks.values()]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


async def read_names(client: Client) -> list[str]:
    """Every workflow name with a CI workflow (visibility)."""
    async with temporal_errors("list the CI workflows"):
        return await ci.workflow_names(client)


_shares_memo: dict[str, Shares] = {}
_SHARES_MEMO_SIZE = 256


def _shares(flags: list[VersionFlag]) -> Shares:
    """``routing_shares``, remembered for flags seen before (sampling costs ~50 ms; flags rarely change)."""
    key = "\n".join(f.model_dump_json() for f in flags)
    found = _shares_memo.get(key)
    if found is None:
        found = _shares_memo[key] = routing_shares(flags)
        while len(_shares_memo) > _SHARES_MEMO_SIZE:
            del _shares_memo[next(iter(_shares_memo))]
    return found


def _versions(flags: list[VersionFlag]) -> tuple[list[VersionView], Routing]:
    shares = _shares(flags)
    views = [
        VersionView(
            seq_id=f.info.seq_id,
            version_id=f.info.version_id,
            task_queue=f.info.task_queue,
            flag_name=f.info.flag_name,
            enabled=f.enabled,
            archived=f.archived,
            general_percent=general_percent(f),
            dark_deploy=has_dark_deploy(f),
            share_percent=shares.percent.get(f.info.flag_name, 0.0),
            test_share_percent=shares.test_percent.get(f.info.flag_name, 0.0),
        )
        for f in flags
    ]
    routing = Routing(
        method=shares.method, unrouted_percent=shares.unrouted, unrouted_test_percent=shares.unrouted_test
    )
    return views, routing


async def read_view(client: Client, flags: FlagStore, workflow_name: str) -> WorkflowView:
    """The CI's merged status (as ``diachronic status --json``) and the workflow's versions, read together."""

    async def versions() -> tuple[list[VersionFlag], str | None]:
        try:
            return await flags.list_version_flags(workflow_name, include_archived=True), None
        except DiachronicError as error:
            return [], f"{error.name}: {error.message}"

    async def status() -> CIStatus:
        async with temporal_errors(f"status of {workflow_name}"):
            return await ci.status(client, workflow_name)

    current, (found, flags_error) = await asyncio.gather(status(), versions())
    views, routing = _versions(found) if not flags_error else ([], None)
    return WorkflowView.model_validate(
        current.model_dump()
        | {
            "versions": views,
            "routing": routing,
            "versions_error": flags_error,
            "read_at": datetime.now(UTC),
        }
    )
