"""Processes as the tests see them, straight from /proc (independent of the code under test), and the backstop
that stops whatever a test started and left running, whatever its outcome (a failure, pytest-timeout's kill).

A pytest plugin (``tests/conftest.py`` loads it): it takes a snapshot of this process's children when a test's body
starts; once the test's fixtures are torn down, ``stop_leftovers`` stops every child started since that is still
alive (its whole process group when it leads one: a Temporal dev server, a CI worker, a sample worker) and the
test errors, naming them.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import pytest

STOP_GRACE_S = 5.0


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw.rsplit(")", 1)[1].split()


def process_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


@dataclass(frozen=True)
class Child:
    pid: int
    start_time: int  # with the pid, names one process (pids are reused)
    pgid: int
    command: str


def children(parent: int | None = None) -> set[Child]:
    """The live children of ``parent`` (default: this process)."""
    parent = os.getpid() if parent is None else parent
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is None or fields[0] in ("Z", "X") or int(fields[1]) != parent:
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            command = "?"
        found.add(Child(int(entry), int(fields[19]), int(fields[2]), command.strip()[:200]))
    return found


def _leads_a_group(child: Child) -> bool:
    return child.pgid == child.pid and child.pgid != os.getpgrp()


def _signal(child: Child, sig: signal.Signals) -> None:
    try:
        if _leads_a_group(child):
            os.killpg(child.pgid, sig)  # its group: what it started stops with it
        else:
            os.kill(child.pid, sig)
    except ProcessLookupError:
        pass


def _running(child: Child) -> bool:
    """The child, or (when it leads a group) anything left in its group, is alive."""
    if process_alive(child.pid):
        return True
    if not _leads_a_group(child):
        return False
    for entry in os.listdir("/proc"):
        fields = _stat(int(entry)) if entry.isdigit() else None
        if fields is not None and fields[0] not in ("Z", "X") and int(fields[2]) == child.pgid:
            return True
    return False


# multiprocessing's resource tracker: started by the interpreter the first time a test uses a spawn context's
# semaphores, it serves this pytest process until it exits (stopping it would break the next test that needs it).
_INTERPRETER_HELPERS = ("from multiprocessing.resource_tracker import main",)


def _interpreter_helper(child: Child) -> bool:
    return any(helper in child.command for helper in _INTERPRETER_HELPERS)


def stop_leftovers(before: set[Child]) -> list[Child]:
    """Stop the children started since ``before`` (SIGTERM, SIGKILL after a grace period); returns them."""
    leftovers = sorted((c for c in children() - before if not _interpreter_helper(c)), key=lambda c: c.pid)
    for child in leftovers:
        _signal(child, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while any(_running(c) for c in leftovers) and time.monotonic() < deadline:
        time.sleep(0.05)
    for child in leftovers:
        if _running(child):
            _signal(child, signal.SIGKILL)
    deadline = time.monotonic() + STOP_GRACE_S  # SIGKILL cannot be refused: only a process stuck in the kernel stays
    while any(_running(c) for c in leftovers) and time.monotonic() < deadline:
        time.sleep(0.05)
    return leftovers


_CHILDREN = pytest.StashKey[set[Child]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    item.stash[_CHILDREN] = children()  # fixtures (a session's dev server...) are started by now: not the test's
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """Whatever the outcome (pytest-timeout included), nothing the test started outlives its teardown."""
    result = yield
    before = item.stash.get(_CHILDREN, None)
    if before is not None:
        leftovers = stop_leftovers(before)
        if leftovers:
            names = "; ".join(f"pid {c.pid}: {c.command}" for c in leftovers)
            raise AssertionError(f"the test left {len(leftovers)} process(es) running (stopped now): {names}")
    return result
