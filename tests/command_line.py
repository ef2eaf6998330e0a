"""The ``diachronic`` command as a user runs it: its own process, its own environment, exit code and both streams."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DIACHRONIC = [sys.executable, "-m", "diachronic.cli.__main__"]


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


async def diachronic(*args: str, env: Mapping[str, str], cwd: Path | None = None) -> Ran:
    """Run ``diachronic ARGS`` without blocking this event loop (a CI worker may be running in it)."""
    process = await asyncio.create_subprocess_exec(
        *DIACHRONIC,
        *args,
        env=dict(env),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
