"""A workflow for the signaler tests: a signal, an update (with a validator) and a query."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio import workflow
from temporalio.common import RawValue

COUNTER = "SignalerCounter"


@workflow.defn(name=COUNTER)
class Counter:
    @workflow.init
    def __init__(self, start: int = 0) -> None:
        self.total = start  # in init: an update delivered with the start sees it
        self.done = False

    @workflow.signal(name="bump")
    def bump(self, by: int = 1) -> None:
        self.total += by

    @workflow.signal(name="finish")
    def finish(self) -> None:
        self.done = True

    @workflow.update(name="add")
    def add(self, by: int) -> int:
        self.total += by
        return self.total

    @add.validator
    def _check_add(self, by: int) -> None:
        if by < 0:
            raise ValueError("add: only positive numbers")

    @workflow.query(name="total")
    def get_total(self) -> int:
        return self.total

    @workflow.run
    async def run(self, start: int = 0) -> int:
        await workflow.wait_condition(lambda: self.done and workflow.all_handlers_finished())
        return self.total


@workflow.defn(dynamic=True, sandboxed=False)
class Anything:
    """Any workflow type: answers every update (None) and takes every signal, until told ``finish`` (the fuzz
    test's worker, so generated updates get answers instead of waiting for a worker that does not exist)."""

    def __init__(self) -> None:
        self.done = False

    @workflow.signal(dynamic=True)
    def any_signal(self, name: str, args: Sequence[RawValue]) -> None:
        if name == "finish":
            self.done = True

    @workflow.update(dynamic=True)
    def any_update(self, name: str, args: Sequence[RawValue]) -> None:
        return None

    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> None:
        await workflow.wait_condition(lambda: self.done and workflow.all_handlers_finished())
