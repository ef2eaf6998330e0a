"""``Coalesced``: one read per workflow at a time however many pages poll, and a stuck read never holds the page."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

from diachronic.errors import NotFound, TimedOut
from diachronic.http.dashboard.reads import Coalesced

T = TypeVar("T")


def returned_without_waiting(call: Coroutine[Any, Any, T]) -> T:
    """The value of ``call`` if it finishes without suspending once: it waited for nothing, whatever the clock says."""
    try:
        call.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    call.close()
    raise AssertionError("it waited")


class Source:
    """A read whose calls are counted and which waits until released (or answers at once)."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def read(self, key: str) -> str:
        self.calls += 1
        call = self.calls
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return f"{key}#{call}"


async def test_concurrent_callers_share_one_read_and_fresh_results_are_reused() -> None:
    source = Source()
    source.gate = asyncio.Event()
    cache = Coalesced(source.read, fresh_s=0.3, timeout_s=5, what="read")
    callers = [asyncio.create_task(cache.get("a", budget_s=2)) for _ in range(10)]
    await asyncio.sleep(0.05)
    source.gate.set()
    assert await asyncio.gather(*callers) == ["a#1"] * 10 and source.calls == 1
    assert await cache.get("a", budget_s=1) == "a#1" and source.calls == 1  # fresh: no new read
    await asyncio.sleep(0.35)
    assert await cache.get("a", budget_s=1) == "a#2"


async def test_a_stuck_read_costs_one_budget_then_answers_at_once_with_the_last_result() -> None:
    source = Source()
    cache = Coalesced(source.read, fresh_s=0, timeout_s=5, what="read")
    assert await cache.get("a", budget_s=1) == "a#1"
    source.gate = asyncio.Event()
    assert await cache.get("a", budget_s=0.3) == "a#1"  # the last known, after waiting the budget
    for _ in range(5):  # the same stuck read is not waited for again
        assert returned_without_waiting(cache.get("a", budget_s=0.3)) == "a#1"
    assert source.calls == 2
    source.gate.set()
    await asyncio.sleep(0.01)
    assert await cache.get("a", budget_s=0.3) in ("a#2", "a#3")
    assert await cache.get("b", budget_s=0.3) == "b#" + str(source.calls)  # other keys never waited on "a"


async def test_nothing_known_yet_is_none_and_errors_are_results() -> None:
    source = Source()
    source.gate = asyncio.Event()
    cache = Coalesced(source.read, fresh_s=10, timeout_s=0.2, what="status of")
    assert await cache.get("a", budget_s=0.05) is None
    await asyncio.sleep(0.3)
    result = await cache.get("a", budget_s=0.05)
    assert isinstance(result, TimedOut)
    assert result.message == "status of a: no answer within 0.2 s (is the CI worker running?)"
    source.gate = None
    source.fail = NotFound("no deployment of 'a'")
    cache.invalidate("a")
    assert isinstance(await cache.get("a", budget_s=1), NotFound)


async def test_invalidate_starts_a_new_read_and_a_late_old_read_never_wins() -> None:
    source = Source()
    source.gate = asyncio.Event()
    cache = Coalesced(source.read, fresh_s=10, timeout_s=5, what="read")
    old = asyncio.create_task(cache.get("a", budget_s=2))
    await asyncio.sleep(0.05)
    cache.invalidate("a")  # a control was sent: what is being read may be from before it
    source.gate.set()
    new = await cache.get("a", budget_s=2)
    assert new == "a#2" and await old == "a#1"
    assert await cache.get("a", budget_s=2) == "a#2", "the newer read is kept"


async def test_close_cancels_what_still_runs() -> None:
    source = Source()
    source.gate = asyncio.Event()
    cache = Coalesced(source.read, fresh_s=0, timeout_s=5, what="read")
    assert await cache.get("a", budget_s=0.01) is None
    await asyncio.wait_for(cache.close(), 1)
