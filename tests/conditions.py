"""Waiting for a condition: how every test waits (never a bare sleep, never a bound on how fast the machine is)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], Any] = bool,
    *,
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.05,
    not_yet: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``probe`` until ``check`` holds for what it returned (by default: until it is truthy), and return that.

    ``timeout`` only ends a wait that would never end: the deadline is generous, the condition is the point.
    ``not_yet``: errors that mean "not yet" (a server restarting, a run being handed over)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await probe()
            if check(last):
                return last  # type: ignore[no-any-return]
        except not_yet as error:
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)
