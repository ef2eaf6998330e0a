"""Workflows the gate tests run: a version that fails its workflows, one whose workflow tasks fail, and gates.

Dynamic where a test picks its own workflow name; the gates have fixed types (``deploy --gate TYPE``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

GATE_PASS = "gate-pass"
GATE_FAIL = "gate-fail"
GATE_SLOW = "gate-slow"


@workflow.defn(dynamic=True)
class Doomed:
    """A broken version whose workflows fail as soon as they run (a migrated one fails after moving)."""

    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> None:
        raise ApplicationError("doomed: this version fails every workflow", non_retryable=True)


@workflow.defn(dynamic=True)
class Crasher:
    """A broken version whose workflow code raises: every workflow task fails, the workflow is stuck (not lost)."""

    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> None:
        raise RuntimeError("crasher: a bug in the workflow code")


@workflow.defn(name=GATE_PASS)
class GatePass:
    @workflow.run
    async def run(self, input: Any = None) -> dict[str, Any]:
        return {"checked": input, "taskQueue": workflow.info().task_queue}


@workflow.defn(name=GATE_FAIL)
class GateFail:
    @workflow.run
    async def run(self, input: Any = None) -> None:
        raise ApplicationError(f"smoke test failed: checkout answered 500 for {input}", non_retryable=True)


@workflow.defn(name=GATE_SLOW)
class GateSlow:
    @workflow.run
    async def run(self, input: Any = None) -> None:
        await asyncio.sleep(3600)
