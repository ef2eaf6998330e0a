"""Local worker processes, started and stopped by diachronic itself: the embedded worker backend.

Files under ``root`` (``Settings.workers_dir``), one set per deployment named
``<workflowName>.<versionId>`` (``.`` can occur in neither name, so the name is unambiguous, unlike the task
queue: ``a-b`` + ``c`` and ``a`` + ``b-c`` both give ``a-b-c``):

    <name>.json   the registration: labels, pid and that pid's start time, command, task queue, log path
    <name>.log    the worker's stdout and stderr, appended across restarts
    <name>.lock   flock'ed while starting or deleting, so two CLIs never start the same version twice

Registrations make the workers outlive the CLI that started them: a new ``LocalWorkers`` on the same
root finds and deletes them. Linux only (liveness comes from /proc). A pid alone is never trusted, pids are
reused (``pid_max`` may be 32768): a registration's process is alive only while ``/proc/<pid>/stat`` shows the
recorded start time and is not a zombie, and no signal is sent to a pid that now names another process.

Limitation: a worker that moves its own children to another process group or session (``setsid``) hides them
from ``delete``; everything that stays in the worker's group is stopped with it.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError

from diachronic import workers
from diachronic.contracts import Contract
from diachronic.errors import InvalidInput, RetryTable, WorkersError, is_retryable
from diachronic.workers import WorkerSet

__all__ = ["DEFAULT_GRACE_S", "NAMESPACE", "OS_ERRORS", "LocalWorkers"]

log = logging.getLogger(__name__)

NAMESPACE = "local"
DEFAULT_GRACE_S = 10.0
DEFAULT_LOCK_TIMEOUT_S = 60.0
KILL_WAIT_S = 5.0
POLL_S = 0.02
STOP_POLL_S = 0.05
TAIL_LINES = 15

# Processes this interpreter started. Polling them reaps zombies: a dead child nobody waits for would linger
# in /proc as a zombie (counted as dead anyway) until this process exits.
_children: dict[int, subprocess.Popen[bytes]] = {}

OS_ERRORS: RetryTable = {
    "OSError": True,  # EAGAIN on fork, ENOSPC, EMFILE...: may pass
    "BlockingIOError": True,
    "ChildProcessError": True,
    "ConnectionError": True,
    "BrokenPipeError": True,
    "ConnectionAbortedError": True,
    "ConnectionRefusedError": True,
    "ConnectionResetError": True,
    "FileExistsError": True,
    "InterruptedError": True,
    "ProcessLookupError": True,
    "TimeoutError": True,
    "PermissionError": False,  # no retry fixes these: a path or a right to change
    "FileNotFoundError": False,
    "NotADirectoryError": False,
    "IsADirectoryError": False,
}
"""Every ``OSError`` class, retryable or not (``tests/test_workers_local.py`` checks none is missing)."""


@contextmanager
def _translate(action: str) -> Iterator[None]:
    """The one place where OS errors become ``WorkersError``; ``retryable`` tells whether to try again."""
    try:
        yield
    except OSError as e:
        raise WorkersError(f"{action}: {e}", retryable=is_retryable(e, OS_ERRORS)) from e


class _Registration(Contract):
    """What ``start`` records, so any later CLI can find, check and stop the process."""

    name: str
    labels: dict[str, str]
    pid: int
    start_time: int  # field 22 of /proc/<pid>/stat (ticks after boot): pid + start time name one process
    command: list[str]
    task_queue: str
    log_path: str
    log_offset: int  # where this run's output begins in the (appended) log
    started_at: datetime


@dataclass(frozen=True)
class _Stat:
    pid: int
    state: str
    pgrp: int
    session: int
    start_time: int

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X", "x")


def _read_stat(pid: int) -> _Stat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # Field 2 (comm) is in parentheses and may contain spaces and ')': the rest starts after the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return _Stat(pid, fields[0].decode(), int(fields[2]), int(fields[3]), int(fields[19]))


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None:
        child.poll()


def _exit_code(pid: int) -> int | None:
    child = _children.get(pid)
    return None if child is None else child.poll()


def _leader_alive(reg: _Registration) -> bool:
    """The registered process itself is running (not gone, not a zombie, not a reused pid)."""
    _reap(reg.pid)
    stat = _read_stat(reg.pid)
    return stat is not None and stat.start_time == reg.start_time and stat.alive


def _group_alive(reg: _Registration) -> bool:
    """Whether any process of the worker's group lives: the leader, or whatever it forked without leaving it.

    Safe against pid reuse: a pid number stays reserved while any process still has it as group id, so if the
    pid now names a process with another start time, the worker's group is certainly empty.
    """
    _reap(reg.pid)
    leader = _read_stat(reg.pid)
    if leader is not None:
        if leader.start_time != reg.start_time:
            return False
        if leader.alive:
            return True
    for entry in os.listdir("/proc"):  # the leader is gone: look for the rest of its group
        if not entry.isdigit():
            continue
        stat = _read_stat(int(entry))
        if (
            stat is not None
            and stat.alive
            and stat.pgrp == reg.pid
            and stat.session == reg.pid
            and stat.start_time >= reg.start_time
        ):
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _parse_name(name: str) -> tuple[str, str]:
    parts = name.split(".")
    if len(parts) != 2:
        raise InvalidInput(f"{name!r} is not a local worker set name (<workflowName>.<versionId>)")
    workers.check_names(parts[0], parts[1])
    return parts[0], parts[1]


def _tail(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(offset, f.seek(0, os.SEEK_END) - 8192))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-TAIL_LINES:])


class LocalWorkers:
    """Worker processes on this machine, one process group per version; implements ``WorkerBackend``.

    ``grace_s`` is how long ``delete`` waits after SIGTERM before SIGKILL; ``lock_timeout_s`` how long a start
    or delete waits for another one of the same version (a start may wait for its ready line meanwhile).
    """

    def __init__(
        self, root: Path, *, grace_s: float = DEFAULT_GRACE_S, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    ) -> None:
        self.root = root
        self.grace_s = grace_s
        self.lock_timeout_s = lock_timeout_s

    # -- the port --------------------------------------------------------------------------------------------

    async def find(self, workflow_name: str, version_id: str) -> list[WorkerSet]:
        """The version's registered workers, dead ones too (``running=False``): ``delete`` clears them."""
        workers.check_names(workflow_name, version_id)
        with _translate(f"finding workers of {workflow_name} {version_id}"):
            reg = self._read(_name(workflow_name, version_id))
        if reg is None or not workers.labels_match(reg.labels, workflow_name, version_id):
            return []
        return [_deployment(reg)]

    async def delete(self, deployment: WorkerSet) -> None:
        """SIGTERM the worker's process group, SIGKILL after ``grace_s``, forget it; already gone is fine.

        A worker started again since ``deployment`` was found (another ``uid``) is not the one meant: it stays."""
        if deployment.namespace != NAMESPACE:
            raise InvalidInput(f"{deployment.name} lives in {deployment.namespace!r}, not in local processes")
        _parse_name(deployment.name)
        await self._delete(deployment.name, uid=deployment.uid)

    async def list_versions(self, workflow_name: str) -> list[str]:
        workers.check_names(workflow_name)
        with _translate(f"listing workers of {workflow_name}"):
            regs = self._read_all(f"{workflow_name}.*.json")
        return sorted({r.labels[workers.LABEL_VERSION] for r in regs if workers.labels_match(r.labels, workflow_name)})

    async def close(self) -> None:
        """Nothing to release; the workers keep running on purpose."""

    # -- local only ------------------------------------------------------------------------------------------

    async def start(
        self,
        workflow_name: str,
        version_id: str,
        command: str | Sequence[str],
        *,
        env: Mapping[str, str | None] | None = None,
        task_queue: str | None = None,
        ready_line: str | None = None,
        timeout_s: float = 30.0,
    ) -> WorkerSet:
        """Start the version's worker, or return the one already running (never a second process).

        ``command`` is an argument list, or a string split as a shell would (no shell runs it). The child runs
        in its own session with ``DIACHRONIC_TASK_QUEUE`` set (``<workflowName>-<versionId>`` unless
        ``task_queue`` is given), ``PYTHONUNBUFFERED=1`` unless ``env`` says otherwise, and ``env`` on top of
        ours (a ``None`` value removes the variable). With ``ready_line``, returns only once a line containing
        it appears in the worker's output (so the caller knows the worker polls); if the worker exits first or
        ``timeout_s`` passes, it is stopped and ``WorkersError`` says why, with the last lines of its log.
        """
        workers.check_names(workflow_name, version_id)
        args = shlex.split(command) if isinstance(command, str) else list(command)
        if not args:
            raise InvalidInput("the worker command is empty")
        queue = f"{workflow_name}-{version_id}" if task_queue is None else task_queue
        if not queue:
            raise InvalidInput("the task queue must not be empty")
        name = _name(workflow_name, version_id)
        with _translate(f"starting worker {name}"):
            self.root.mkdir(parents=True, exist_ok=True)
            async with self._lock(name):
                reg = self._read(name)
                if reg is not None and _leader_alive(reg):
                    log.info("worker %s already runs as pid %d", name, reg.pid)
                else:
                    if reg is not None:  # a dead run: stop what it left in its group, then start afresh
                        await self._stop(reg)
                    reg = self._spawn(name, workers.worker_labels(workflow_name, version_id), args, env, queue)
                if ready_line is not None:
                    await self._wait_ready(reg, ready_line, timeout_s)
                return _deployment(reg)

    async def list_all(self) -> list[WorkerSet]:
        """Every registered worker under ``root`` (for status displays and clean-ups)."""
        with _translate("listing local workers"):
            return [_deployment(r) for r in self._read_all("*.json")]

    async def stop_all(self) -> list[str]:
        """Delete every registered worker under ``root`` (in parallel); returns their names.

        One failure (an unreadable registration, say) does not spare the others: it is raised after them."""
        with _translate("listing local workers"):
            names = self._names("*.json")
        results = await asyncio.gather(*(self._delete(n) for n in names), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return names

    def stop_all_sync(self) -> list[str]:
        """``stop_all`` for synchronous clean-up code (``finally``, atexit), even while an event loop runs."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self.stop_all()).result()

    # -- internals -------------------------------------------------------------------------------------------

    async def _delete(self, name: str, *, uid: str | None = None) -> None:
        with _translate(f"deleting worker {name}"):
            if not self.root.is_dir():
                return
            async with self._lock(name):
                reg = self._read(name)
                if reg is None:
                    return
                if uid is not None and uid != _uid(reg):
                    log.info("worker %s was started again since it was found: not deleting it", name)
                    return
                await self._stop(reg)
                self._path(name, "json").unlink(missing_ok=True)
        log.info("worker %s deleted", name)

    async def _stop(self, reg: _Registration) -> None:
        """Stop the group without blocking the event loop: SIGTERM, poll, SIGKILL after the grace period."""
        if not _group_alive(reg):
            return
        _signal_group(reg.pid, signal.SIGTERM)
        if await _wait_gone(reg, self.grace_s):
            return
        log.warning("worker %s ignored SIGTERM for %g s: killing it", reg.name, self.grace_s)
        _signal_group(reg.pid, signal.SIGKILL)
        if not await _wait_gone(reg, KILL_WAIT_S):
            raise WorkersError(f"worker {reg.name} (process group {reg.pid}) survived SIGKILL")

    def _spawn(
        self, name: str, labels: dict[str, str], args: list[str], env: Mapping[str, str | None] | None, queue: str
    ) -> _Registration:
        log_path = self._path(name, "log")
        merged = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {}), workers.TASK_QUEUE_ENV: queue}
        child_env = {key: value for key, value in merged.items() if value is not None}
        started_at = datetime.now(UTC)
        with log_path.open("ab") as out:
            out.write(f"--- diachronic: starting {shlex.join(args)} at {started_at.isoformat()}\n".encode())
            out.flush()
            offset = out.tell()
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env,
                start_new_session=True,
            )
        _children[process.pid] = process
        stat = _read_stat(process.pid)  # our unreaped child has a /proc entry, a zombie's at worst
        if stat is None:
            _signal_group(process.pid, signal.SIGKILL)
            raise WorkersError(f"cannot read /proc/{process.pid}/stat: local workers need Linux's /proc")
        reg = _Registration(
            name=name,
            labels=labels,
            pid=process.pid,
            start_time=stat.start_time,
            command=args,
            task_queue=queue,
            log_path=str(log_path),
            log_offset=offset,
            started_at=started_at,
        )
        try:
            self._write(reg)
        except BaseException:
            _signal_group(process.pid, signal.SIGKILL)  # an unregistered worker could never be found again
            raise
        log.info("worker %s started as pid %d on task queue %s", name, process.pid, queue)
        return reg

    async def _wait_ready(self, reg: _Registration, ready_line: str, timeout_s: float) -> None:
        needle = ready_line.encode()
        keep = max(len(needle) - 1, 0)
        deadline = time.monotonic() + timeout_s
        carry = b""
        with open(reg.log_path, "rb") as f:
            f.seek(reg.log_offset)
            while True:
                exited = not _leader_alive(reg)  # checked before reading: what it wrote before exiting counts
                while chunk := f.read(1 << 20):
                    data = carry + chunk
                    if needle in data:
                        return
                    carry = data[len(data) - keep :] if keep else b""
                if exited:
                    code = _exit_code(reg.pid)
                    how = "exited" if code is None else f"exited with code {code}"
                    await self._fail_start(reg, f"{how} before printing {ready_line!r}", retryable=False)
                if time.monotonic() >= deadline:
                    await self._fail_start(reg, f"did not print {ready_line!r} within {timeout_s:g} s", retryable=True)
                await asyncio.sleep(POLL_S)

    async def _fail_start(self, reg: _Registration, why: str, *, retryable: bool) -> NoReturn:
        await self._stop(reg)
        self._path(reg.name, "json").unlink(missing_ok=True)
        tail = _tail(Path(reg.log_path), reg.log_offset)
        shown = f"; last lines of {reg.log_path}:\n{tail}" if tail else f"; {reg.log_path} is empty"
        what = f"worker {reg.name} ({shlex.join(reg.command)})"
        raise WorkersError(f"{what} {why}{shown}", retryable=retryable)

    @asynccontextmanager
    async def _lock(self, name: str) -> AsyncIterator[None]:
        """An exclusive flock on ``<name>.lock``, polled so that waiting never blocks the event loop."""
        fd = os.open(self._path(name, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            deadline = time.monotonic() + self.lock_timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise WorkersError(
                            f"worker {name} is being started or deleted by someone else for over "
                            f"{self.lock_timeout_s:g} s",
                            retryable=True,
                        ) from None
                    await asyncio.sleep(POLL_S)
            yield
        finally:
            os.close(fd)

    def _path(self, name: str, suffix: str) -> Path:
        return self.root / f"{name}.{suffix}"

    def _read(self, name: str) -> _Registration | None:
        path = self._path(name, "json")
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            return _Registration.model_validate_json(text)
        except ValidationError as e:
            raise WorkersError(
                f"the worker registration {path} is unreadable ({e.error_count()} errors); "
                "stop its process by hand and delete the file",
                retryable=False,
            ) from e

    def _names(self, pattern: str) -> list[str]:
        """Names of the registration files matching ``pattern``; files not named like ours are ignored."""
        if not self.root.is_dir():
            return []
        names = []
        for path in sorted(self.root.glob(pattern)):
            name = path.name.removesuffix(".json")
            try:
                _parse_name(name)
            except InvalidInput:
                continue
            names.append(name)
        return names

    def _read_all(self, pattern: str) -> list[_Registration]:
        return [reg for name in self._names(pattern) if (reg := self._read(name)) is not None]

    def _write(self, reg: _Registration) -> None:
        """Atomically: a reader sees the old registration or the new one, never half of one."""
        path = self._path(reg.name, "json")
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(reg.model_dump_json(indent=2))
        os.replace(tmp, path)


def _name(workflow_name: str, version_id: str) -> str:
    return f"{workflow_name}.{version_id}"


def _uid(reg: _Registration) -> str:
    return f"{reg.pid}@{reg.start_time}"


def _deployment(reg: _Registration) -> WorkerSet:
    return WorkerSet(
        name=reg.name,
        namespace=NAMESPACE,
        uid=_uid(reg),
        labels=reg.labels,
        task_queue=reg.task_queue,
        running=_leader_alive(reg),
        replicas=1,
        started_at=reg.started_at,
        pid=reg.pid,
        log_path=reg.log_path,
    )


async def _wait_gone(reg: _Registration, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _group_alive(reg):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True
