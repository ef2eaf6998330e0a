"""Local worker processes: the deployments contract, plus what only real processes can show (environment, ready
line, SIGKILL after the grace period, pid reuse, survival across CLI restarts)."""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.processes import process_alive

from diachronic.errors import InvalidInput, WorkersError
from diachronic.workers import LABEL_VERSION, LABEL_WORKFLOW, WorkerBackend, WorkerSet
from diachronic.workers.local import OS_ERRORS, LocalWorkers
from workers_contract import DeploymentsContract, eventually

READY = "worker ready"
SLEEPER = f"print({READY!r}); import time; time.sleep(120)"


def py(code: str) -> list[str]:
    """A tiny worker: this Python without site-packages (fast to start), running ``code``."""
    return [sys.executable, "-S", "-c", textwrap.dedent(code)]


def kill_leftovers(pids: list[int]) -> None:
    for pid in pids:
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)


class LocalHarness:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pids: list[int] = []

    def open(self) -> WorkerBackend:
        return LocalWorkers(self.root, grace_s=2.0)

    async def create(self, workflow_name: str, version_id: str) -> None:
        started = await LocalWorkers(self.root).start(
            workflow_name, version_id, py(SLEEPER), ready_line=READY, timeout_s=10
        )
        assert started.pid is not None
        self.pids.append(started.pid)

    async def create_labelled(self, labels: dict[str, str]) -> None:
        """A running worker whose registration, named as ``orders.v1`` would be (or the next free name), carries only
        these labels: a file edited by hand or written by another tool."""
        workflow_name, version_id = labels.get(LABEL_WORKFLOW, "orders"), labels.get(LABEL_VERSION, "v1")
        while (self.root / f"{workflow_name}.{version_id}.json").exists():
            version_id += "-next"
        started = await LocalWorkers(self.root).start(
            workflow_name, version_id, py(SLEEPER), ready_line=READY, timeout_s=10
        )
        assert started.pid is not None
        self.pids.append(started.pid)
        registration = self.root / f"{started.name}.json"
        registration.write_text(json.dumps({**json.loads(registration.read_text()), "labels": labels}))

    async def is_gone(self, deployment: WorkerSet) -> bool:
        assert deployment.pid is not None
        return not process_alive(deployment.pid)


class TestLocalDeploymentsContract(DeploymentsContract):
    @pytest.fixture
    async def harness(self, tmp_path: Path) -> AsyncIterator[LocalHarness]:
        harness = LocalHarness(tmp_path / "workers")
        yield harness
        await LocalWorkers(harness.root, grace_s=1.0).stop_all()
        kill_leftovers(harness.pids)


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[LocalWorkers]:
    workers = LocalWorkers(tmp_path / "workers", grace_s=0.5)
    yield workers
    pids = [d.pid for d in await workers.list_all() if d.pid is not None]
    await workers.stop_all()
    kill_leftovers(pids)


def log_text(deployment: WorkerSet) -> str:
    assert deployment.log_path is not None
    return Path(deployment.log_path).read_text()


# -- starting ------------------------------------------------------------------------------------------------


async def test_the_child_gets_its_task_queue_and_the_callers_env(workers: LocalWorkers) -> None:
    # No flush=True: PYTHONUNBUFFERED (set by start) is what gets these lines into the log in time.
    code = f"""
        import os, time
        print("queue=" + os.environ["DIACHRONIC_TASK_QUEUE"], "extra=" + os.environ["EXTRA"])
        print({READY!r})
        time.sleep(120)
    """
    default = await workers.start("orders", "v1", py(code), env={"EXTRA": "x"}, ready_line=READY, timeout_s=10)
    assert default.task_queue == "orders-v1"
    assert "queue=orders-v1 extra=x" in log_text(default)

    custom = await workers.start(
        "orders", "v2", py(code), env={"EXTRA": "y"}, task_queue="custom-q", ready_line=READY, timeout_s=10
    )
    assert custom.task_queue == "custom-q"
    assert "queue=custom-q extra=y" in log_text(custom)


async def test_start_records_a_registration_a_later_cli_can_use(workers: LocalWorkers) -> None:
    started = await workers.start("orders", "v1", py(SLEEPER), ready_line=READY, timeout_s=10)
    assert started.running
    assert started.name == "orders.v1"
    assert started.namespace == "local"
    registration = json.loads((workers.root / "orders.v1.json").read_text())
    assert registration["pid"] == started.pid
    assert registration["taskQueue"] == "orders-v1"
    assert registration["command"] == py(SLEEPER)
    assert registration["labels"] == {"diachronic/workflow-name": "orders", "diachronic/version-id": "v1"}
    stat = Path(f"/proc/{started.pid}/stat").read_text()
    assert int(stat.rsplit(")", 1)[1].split()[19]) == registration["startTime"]


async def test_the_ready_line_is_awaited(workers: LocalWorkers) -> None:
    code = f"""
        import time
        print("connecting")
        time.sleep(0.3)
        print("polling: {READY}")
        time.sleep(120)
    """
    started = await workers.start("orders", "v1", py(code), ready_line=READY, timeout_s=10)
    assert f"polling: {READY}" in log_text(started)


async def test_a_ready_line_from_an_earlier_run_does_not_count(workers: LocalWorkers) -> None:
    first = await workers.start("orders", "v1", py(SLEEPER), ready_line=READY, timeout_s=10)
    await workers.delete(first)
    with pytest.raises(WorkersError, match="did not print"):
        await workers.start("orders", "v1", py("import time; time.sleep(120)"), ready_line=READY, timeout_s=0.3)
    assert READY in log_text(first)  # the log is appended to, the old line is still there


async def test_a_worker_that_exits_before_ready_is_a_clear_error(workers: LocalWorkers) -> None:
    code = """
        import sys
        print("boom: DIACHRONIC_SECRET_FILE is missing")
        sys.exit(3)
    """
    with pytest.raises(WorkersError) as raised:
        await workers.start("orders", "v1", py(code), ready_line=READY, timeout_s=10)
    message = str(raised.value)
    assert "orders.v1" in message
    assert "exited with code 3" in message
    assert "boom: DIACHRONIC_SECRET_FILE is missing" in message
    assert not raised.value.retryable
    assert await workers.find("orders", "v1") == []


async def test_a_worker_that_never_gets_ready_is_stopped(workers: LocalWorkers) -> None:
    code = "import os, time; print('pid=' + str(os.getpid())); time.sleep(120)"
    with pytest.raises(WorkersError, match=r"did not print 'worker ready' within 0\.3 s") as raised:
        await workers.start("orders", "v1", py(code), ready_line=READY, timeout_s=0.3)
    assert raised.value.retryable
    pid = int((workers.root / "orders.v1.log").read_text().split("\npid=")[1].split()[0])
    assert not process_alive(pid)
    assert await workers.find("orders", "v1") == []


async def test_start_is_idempotent(workers: LocalWorkers) -> None:
    first = await workers.start("orders", "v1", py(SLEEPER), ready_line=READY, timeout_s=10)
    again = await workers.start("orders", "v1", py(SLEEPER), ready_line=READY, timeout_s=10)
    assert again.pid == first.pid

    racing = await asyncio.gather(
        *(workers.start("orders", "v2", py(SLEEPER), ready_line=READY, timeout_s=10) for _ in range(3)),
        LocalWorkers(workers.root).start("orders", "v2", py(SLEEPER), ready_line=READY, timeout_s=10),
    )
    assert len({d.pid for d in racing}) == 1
    assert log_text(racing[0]).count("--- diachronic: starting") == 1


async def test_a_dead_worker_is_reported_and_restarted(workers: LocalWorkers) -> None:
    started = await workers.start("orders", "v1", py("print('bye')"))

    async def dead() -> bool:
        [found] = await workers.find("orders", "v1")
        return not found.running

    await eventually(dead, what="the worker is reported dead")
    assert await workers.list_versions("orders") == ["v1"]  # still registered until deleted or restarted
    restarted = await workers.start("orders", "v1", py(SLEEPER), ready_line=READY, timeout_s=10)
    assert restarted.running
    assert restarted.pid != started.pid


async def test_a_missing_executable_is_not_retryable(workers: LocalWorkers, tmp_path: Path) -> None:
    with pytest.raises(WorkersError) as raised:
        await workers.start("orders", "v1", [str(tmp_path / "no-such-worker")])
    assert not raised.value.retryable
    assert await workers.find("orders", "v1") == []


OS_ERROR_CLASSES = sorted(
    (c for c in vars(builtins).values() if isinstance(c, type) and issubclass(c, OSError)), key=lambda c: c.__name__
)


def test_every_os_error_is_mapped() -> None:
    """Meta-test: every ``OSError`` class Python has is named in ``OS_ERRORS``, so each was decided on."""
    assert {c.__name__ for c in OS_ERROR_CLASSES} - set(OS_ERRORS) == set()


@pytest.mark.parametrize("error_class", OS_ERROR_CLASSES, ids=lambda c: c.__name__)
async def test_every_os_error_becomes_a_typed_workers_error(
    workers: LocalWorkers, monkeypatch: pytest.MonkeyPatch, error_class: type[OSError]
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error_class(5, "injected")

    monkeypatch.setattr(subprocess, "Popen", fail)
    with pytest.raises(WorkersError) as raised:
        await workers.start("orders", "v1", py(SLEEPER))
    assert raised.value.retryable is OS_ERRORS[error_class.__name__]
    assert "injected" in raised.value.message


async def test_bad_input_is_rejected_before_anything_happens(workers: LocalWorkers) -> None:
    with pytest.raises(InvalidInput):
        await workers.start("bad.name", "v1", py(SLEEPER))
    with pytest.raises(InvalidInput):
        await workers.start("orders", "v/1", py(SLEEPER))
    with pytest.raises(InvalidInput):
        await workers.start("orders", "v1", [])
    assert not workers.root.exists()
    fake = WorkerSet(name="../../etc.passwd", namespace="local", labels={}, running=True)
    with pytest.raises(InvalidInput):
        await workers.delete(fake)
    with pytest.raises(InvalidInput):
        await workers.delete(fake.model_copy(update={"name": "orders.v1", "namespace": "default"}))


async def test_a_corrupt_registration_is_reported(workers: LocalWorkers) -> None:
    workers.root.mkdir(parents=True)
    (workers.root / "orders.v1.json").write_text("{not json")
    with pytest.raises(WorkersError, match=r"orders\.v1\.json is unreadable") as raised:
        await workers.find("orders", "v1")
    assert not raised.value.retryable
    started = await workers.start("billing", "v1", py(SLEEPER), ready_line=READY, timeout_s=10)
    with pytest.raises(WorkersError, match="unreadable"):
        await workers.stop_all()
    assert not process_alive(started.pid or 0)  # the readable one was stopped all the same
    (workers.root / "orders.v1.json").unlink()


# -- stopping ------------------------------------------------------------------------------------------------


async def test_a_worker_ignoring_sigterm_is_killed_after_the_grace_period(
    workers: LocalWorkers,
) -> None:
    # The worker ignores SIGTERM and forks a helper that stays in its process group: both must go.
    code = f"""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        helper = subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(120)"])
        print("helper-pid=" + str(helper.pid))
        print({READY!r})
        time.sleep(120)
    """
    started = await workers.start("orders", "v1", py(code), ready_line=READY, timeout_s=10)
    assert started.pid is not None
    helper = int(log_text(started).split("\nhelper-pid=")[1].split()[0])
    assert process_alive(helper)

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    began = time.monotonic()
    await workers.delete(started)
    elapsed = time.monotonic() - began
    ticking.cancel()

    assert elapsed >= workers.grace_s  # SIGTERM was not enough, SIGKILL came after the grace period
    assert ticks >= 5  # the event loop kept running meanwhile
    assert not process_alive(started.pid)
    assert not process_alive(helper)
    assert await workers.find("orders", "v1") == []


async def test_what_a_dead_worker_left_in_its_group_is_stopped(workers: LocalWorkers) -> None:
    code = f"""
        import subprocess, sys
        helper = subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(120)"])
        print("helper-pid=" + str(helper.pid))
        print({READY!r})
    """
    started = await workers.start("orders", "v1", py(code), ready_line=READY, timeout_s=10)
    helper = int(log_text(started).split("\nhelper-pid=")[1].split()[0])

    async def leader_dead() -> bool:
        [found] = await workers.find("orders", "v1")
        return not found.running

    await eventually(leader_dead, what="the worker exited")
    assert process_alive(helper)
    [found] = await workers.find("orders", "v1")
    await workers.delete(found)
    assert not process_alive(helper)


async def test_a_reused_pid_is_never_signalled(workers: LocalWorkers) -> None:
    started = await workers.start("orders", "v1", py(SLEEPER), ready_line=READY, timeout_s=10)
    assert started.pid is not None
    # Pretend the worker died and its pid now belongs to another process: same pid, another start time.
    path = workers.root / "orders.v1.json"
    registration = json.loads(path.read_text())
    registration["startTime"] -= 1
    path.write_text(json.dumps(registration))

    reopened = LocalWorkers(workers.root, grace_s=0.5)
    [found] = await reopened.find("orders", "v1")
    assert not found.running
    await reopened.delete(found)
    assert await reopened.find("orders", "v1") == []
    assert process_alive(started.pid)  # the "other" process was left alone
    os.kill(started.pid, signal.SIGKILL)


async def test_workers_survive_the_cli_that_started_them(workers: LocalWorkers) -> None:
    script = f"""
        import asyncio, sys
        from pathlib import Path
        from diachronic.workers.local import LocalWorkers

        async def main() -> None:
            workers = LocalWorkers(Path({str(workers.root)!r}))
            await workers.start("orders", "v1", {py(SLEEPER)!r}, ready_line={READY!r}, timeout_s=10)

        asyncio.run(main())
    """
    subprocess.run([sys.executable, "-c", textwrap.dedent(script)], check=True, timeout=30)

    [found] = await workers.find("orders", "v1")  # not our child: liveness comes from /proc alone
    assert found.running
    assert found.pid is not None
    await workers.delete(found)
    await eventually(lambda: not process_alive(found.pid or 0), what="the worker stopped")
    assert await workers.find("orders", "v1") == []


async def test_stop_all_sync_works_inside_a_running_loop(workers: LocalWorkers) -> None:
    started = [
        await workers.start(workflow_name, "v1", py(SLEEPER), ready_line=READY, timeout_s=10)
        for workflow_name in ("orders", "billing")
    ]
    assert sorted(workers.stop_all_sync()) == ["billing.v1", "orders.v1"]
    assert await workers.list_all() == []
    assert not any(process_alive(d.pid or 0) for d in started)
    assert workers.stop_all_sync() == []
