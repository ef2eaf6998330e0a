"""How a long-running process of ours stops: on SIGINT or SIGTERM, and without interpreter finalization."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import NoReturn


def stop_on_signals() -> asyncio.Event:
    """An event that SIGINT or SIGTERM sets (call it in the running loop): the command, worker or sample worker
    waits on it, then shuts down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def exit_with(code: int | str | None) -> NoReturn:
    """Flush and leave without interpreter finalization: temporalio's core threads can abort it (SIGABRT)."""
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
