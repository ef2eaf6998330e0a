"""Processes as the tests see them: straight from /proc, independent of the code under test."""

from __future__ import annotations

from pathlib import Path


def process_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
