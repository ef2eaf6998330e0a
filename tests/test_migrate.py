"""The migrate SDK on the time-skipping test server: one test per promise in docs/migrate.md."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from pydantic import TypeAdapter
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker
from tests.conditions import eventually

from diachronic.migrate import (
    CONTINUATION_KEY,
    MIGRATE_SIGNAL,
    STATE_REJECTED_ERROR,
    Continuation,
    MigrationEnvelope,
    Snapshot,
    locate,
    parse_migrate_args,
    signal_migrate,
    snapshot,
    wait_for_task_queue,
)
from test_migrate_support import (
    PROBE_TYPE,
    PlainProbe,
    ProbeResult,
    ProbeStart,
    ProbeV1,
    ProbeV1Back,
    ProbeV2,
)

T = TypeVar("T")

_released: dict[str, asyncio.Event] = {}
_started: dict[str, asyncio.Event] = {}


@activity.defn(name="probe_block")
async def probe_block(workflow_id: str) -> str:
    """Blocks until the test releases it: stands for a charge that must not be interrupted."""
    _started.setdefault(workflow_id, asyncio.Event()).set()
    await _released.setdefault(workflow_id, asyncio.Event()).wait()
    return "released"


_started_probes: list[tuple[Client, str]] = []


@asynccontextmanager
async def workers(client: Client, *, a: bool = True, b: bool = True) -> AsyncIterator[tuple[str, str]]:
    """Queue A runs ProbeV1 (the old version), queue B runs ProbeV2 (the new one).

    Probes still running at the end are terminated: on the shared time-skipping server, a timer firing for a
    workflow whose worker is gone leaves a workflow task nobody takes, and that stops time skipping for
    every later test of the session.
    """
    qa, qb = f"probe-a-{uuid.uuid4()}", f"probe-b-{uuid.uuid4()}"
    mark = len(_started_probes)
    async with (
        Worker(client, task_queue=qa, workflows=[ProbeV1], activities=[probe_block]) if a else _null(),
        Worker(client, task_queue=qb, workflows=[ProbeV2]) if b else _null(),
    ):
        try:
            yield qa, qb
        finally:
            await terminate_all(_started_probes[mark:])
            del _started_probes[mark:]


async def terminate_all(started: list[tuple[Client, str]]) -> None:
    for client, workflow_id in started:
        with contextlib.suppress(RPCError):  # already closed
            await client.get_workflow_handle(workflow_id).terminate("test over")  # the latest run


@asynccontextmanager
async def _null() -> AsyncIterator[None]:
    yield None


async def start_probe(client: Client, queue: str, start: ProbeStart | None = None) -> WorkflowHandle[Any, Any]:
    handle = await client.start_workflow(
        PROBE_TYPE, start or ProbeStart(), id=f"probe-{uuid.uuid4()}", task_queue=queue, result_type=ProbeResult
    )
    _started_probes.append((client, handle.id))
    return handle


async def snap(client: Client, handle: WorkflowHandle[Any, Any]) -> Snapshot:
    return await snapshot(client, handle.id)


# ---- pure protocol pieces ----


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param([{"taskQueue": "q-v2"}], ("q-v2", None), id="good payload"),
        pytest.param([{"taskQueue": "q-v2", "extra": 1}], ("q-v2", None), id="unknown keys are tolerated"),
        pytest.param([], (None, "expected one argument"), id="no argument"),
        pytest.param([{"taskQueue": "a"}, {"taskQueue": "b"}], (None, "got 2"), id="two arguments"),
        pytest.param(["q-v2"], (None, "must be an object"), id="not a dict"),
        pytest.param([None], (None, "must be an object"), id="null"),
        pytest.param([{}], (None, "no 'taskQueue'"), id="missing taskQueue"),
        pytest.param([{"taskQueue": ""}], (None, "is empty"), id="empty taskQueue"),
        pytest.param([{"taskQueue": "  "}], (None, "is empty"), id="blank taskQueue"),
        pytest.param([{"taskQueue": 7}], (None, "must be a string"), id="taskQueue not a string"),
    ],
)
def test_parse_migrate_args(args: list[Any], expected: tuple[str | None, str | None]) -> None:
    queue, problem = parse_migrate_args(args)
    assert queue == expected[0]
    if expected[1] is None:
        assert problem is None
    else:
        assert problem is not None and expected[1] in problem


def test_envelope_wire_shape_and_union_with_start_input() -> None:
    envelope = MigrationEnvelope(
        continuation=Continuation(
            state={"count": 1},
            state_version="probe/1",
            timers={"wake": datetime.fromisoformat("2030-01-01T00:00:00+00:00")},
            from_task_queue="q-v1",
            to_task_queue="q-v2",
            from_run_id="r1",
            migrated_at=datetime.fromisoformat("2029-12-31T00:00:00+00:00"),
        )
    )
    wire = envelope.to_wire()
    assert wire == {
        CONTINUATION_KEY: {
            "state": {"count": 1},
            "stateVersion": "probe/1",
            "timers": {"wake": "2030-01-01T00:00:00Z"},
            "fromTaskQueue": "q-v1",
            "toTaskQueue": "q-v2",
            "fromRunId": "r1",
            "migratedAt": "2029-12-31T00:00:00Z",
        }
    }
    run_arg = TypeAdapter(MigrationEnvelope | ProbeStart)
    assert run_arg.validate_python(wire) == envelope
    assert isinstance(run_arg.validate_python({"note": "x"}), ProbeStart)
    assert isinstance(run_arg.validate_python({}), ProbeStart)


# ---- on the time-skipping server ----


async def test_migrates_to_new_queue_with_transformed_state(time_env: WorkflowEnvironment) -> None:
    client = time_env.client
    async with workers(client) as (qa, qb):
        handle = await start_probe(client, qa, ProbeStart(note="hello"))
        await handle.signal(ProbeV1.add, 5)
        first = await locate(client, handle.id)
        assert first.task_queue == qa

        await signal_migrate(client, handle.id, qb)
        moved = await wait_for_task_queue(client, handle.id, qb, timeout=10)

        assert moved.run_id != first.run_id
        assert moved.workflow_type == PROBE_TYPE
        assert await handle.query("version") == "v2"
        s = await snap(client, handle)
        assert s.task_queue == qb
        assert s.state_version == "probe/2"
        assert s.state["total"] == 5 and s.state["notes"] == ["hello"]
        assert s.state["upgraded_from"] == "probe/1"
        assert s.migrated_from == qa and s.migrated_at is not None
        assert s.pending_task_queue is None

        await handle.signal(ProbeV2.finish)
        result = await handle.result()
        assert result.version == "v2" and result.state["total"] == 5

        # Both runs replay deterministically (cancel-at-a-safe-point, then continue-as-new).
        for cls, run_id in ((ProbeV1, first.run_id), (ProbeV2, moved.run_id)):
            history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
            await Replayer(workflows=[cls], data_converter=pydantic_data_converter).replay_workflow(history)


async def test_signals_delivered_before_migrate_are_handled_first(time_env: WorkflowEnvironment) -> None:
    client = time_env.client
    async with workers(client, a=False) as (qa, qb):
        # No worker on A yet: every signal below is delivered before the workflow runs at all.
        handle = await start_probe(client, qa)
        await handle.signal(ProbeV1.add, 1)
        await handle.signal(ProbeV1.slow_add, 10)  # async handler: migration waits until it finished
        await handle.signal(ProbeV1.add, 100)
        await signal_migrate(client, handle.id, qb)
        await handle.signal(ProbeV1.add, 1000)  # delivered before the move as well
        async with Worker(client, task_queue=qa, workflows=[ProbeV1], activities=[probe_block]):
            await wait_for_task_queue(client, handle.id, qb, timeout=10)
        s = await snap(client, handle)
        assert s.state["total"] == 1111


@pytest.mark.parametrize(
    ("start", "timer", "carried", "woke"),
    [
        pytest.param(ProbeStart(wait_s=3600), "wake", "wake_at", "woke_at", id="sleep_until"),
        # V2 waits 365 days on the same named timer: the carried deadline must win.
        pytest.param(ProbeStart(timer_s=7200), "reminder", None, "timer_woke_at", id="named timer"),
    ],
)
async def test_timers_keep_their_deadlines_across_the_move(
    time_env: WorkflowEnvironment, start: ProbeStart, timer: str, carried: str | None, woke: str
) -> None:
    client = time_env.client
    async with workers(client) as (qa, qb):
        handle = await start_probe(client, qa, start)
        before = await eventually(lambda: snap(client, handle), lambda s: timer in s.timers)
        deadline = before.timers[timer]

        await signal_migrate(client, handle.id, qb)
        await wait_for_task_queue(client, handle.id, qb, timeout=10)
        after = await snap(client, handle)
        assert after.timers[timer] == deadline
        if carried is not None:
            assert datetime.fromisoformat(after.state[carried]) == deadline

        await handle.signal(ProbeV2.finish)
        result = await handle.result()  # time skips to the deadline
        woke_at = datetime.fromisoformat(str(result.state[woke]))
        assert timedelta(0) <= woke_at - deadline < timedelta(seconds=2)


async def test_no_migrate_section_defers_migration(time_env: WorkflowEnvironment) -> None:
    client = time_env.client
    async with workers(client) as (qa, qb):
        handle = await start_probe(client, qa, ProbeStart(block=True))
        _started.setdefault(handle.id, asyncio.Event())
        await asyncio.wait_for(_started[handle.id].wait(), 10)
        first = await locate(client, handle.id)

        await signal_migrate(client, handle.id, qb)
        pending = await eventually(lambda: snap(client, handle), lambda s: s.pending_task_queue == qb)
        assert pending.in_no_migrate
        still = await locate(client, handle.id)
        assert (still.run_id, still.task_queue) == (first.run_id, qa)

        _released.setdefault(handle.id, asyncio.Event()).set()
        await wait_for_task_queue(client, handle.id, qb, timeout=10)
        s = await snap(client, handle)
        assert s.state["blocked_result"] == "released"  # the section's result travelled with the state


async def test_duplicate_late_and_same_queue_signals_are_harmless(time_env: WorkflowEnvironment) -> None:
    client = time_env.client
    async with workers(client) as (qa, qb):
        handle = await start_probe(client, qa)
        first = await locate(client, handle.id)

        # Naming the queue it is already on does nothing.
        await signal_migrate(client, handle.id, qa)
        await handle.signal(ProbeV1.note, "after-same-queue")
        await eventually(lambda: snap(client, handle), lambda s: "after-same-queue" in s.state["notes"])
        assert (await locate(client, handle.id)).run_id == first.run_id

        # Duplicates: one move.
        await asyncio.gather(*(signal_migrate(client, handle.id, qb) for _ in range(3)))
        moved = await wait_for_task_queue(client, handle.id, qb, timeout=10)

        # Late: the new run ignores a migrate to the queue it is on.
        await signal_migrate(client, handle.id, qb)
        await handle.signal(ProbeV2.note, "after-late")
        s = await eventually(lambda: snap(client, handle), lambda s: "after-late" in s.state["notes"])
        assert s.run_id == moved.run_id and s.task_queue == qb
        assert s.migrated_from == qa  # moved once, from A, not B→B


async def test_bad_migrate_payloads_are_logged_and_ignored(
    time_env: WorkflowEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    client = time_env.client
    caplog.set_level(logging.WARNING, logger="temporalio.workflow")
    bad: list[list[Any]] = [[], [{}], [{"taskQueue": ""}], [{"taskQueue": 42}], ["q"], [None], [{"a": 1}, {"b": 2}]]
    async with workers(client) as (qa, qb):
        handle = await start_probe(client, qa)
        first = await locate(client, handle.id)
        for args in bad:
            await handle.signal(MIGRATE_SIGNAL, args=args)
        await handle.signal(ProbeV1.note, "alive")
        s = await eventually(lambda: snap(client, handle), lambda s: "alive" in s.state["notes"])
        assert (s.run_id, s.task_queue, s.pending_task_queue) == (first.run_id, qa, None)
        ignored = [r for r in caplog.records if f"ignoring {MIGRATE_SIGNAL} signal" in r.getMessage()]
        assert len(ignored) >= len(bad)

        # Still obeys a good one afterwards.
        await signal_migrate(client, handle.id, qb)
        await wait_for_task_queue(client, handle.id, qb, timeout=10)


async def test_rejected_state_fails_loudly(time_env: WorkflowEnvironment) -> None:
    client = time_env.client
    async with workers(client, b=False) as (qa, qb):
        handle = await start_probe(client, qa, ProbeStart(note="reject"))
        await handle.signal(ProbeV1.add, 9)
        await signal_migrate(client, handle.id, qb)
        await eventually(lambda: locate(client, handle.id), lambda where: where.task_queue == qb)
        # Delivered with the new run's start, so its handler runs before @workflow.run: still a loud failure.
        await handle.signal(ProbeV2.note, "first")
        async with Worker(client, task_queue=qb, workflows=[ProbeV2]):
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()
        cause = failure.value.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == STATE_REJECTED_ERROR and cause.non_retryable
        assert handle.id in cause.message and "notes contain 'reject'" in cause.message
        carried = cause.details[0][CONTINUATION_KEY]  # the state is in the failure, not dropped
        assert carried["state"]["count"] == 9 and carried["fromTaskQueue"] == qa


async def test_unknown_state_version_without_transform_fails_loudly(time_env: WorkflowEnvironment) -> None:
    client = time_env.client
    async with workers(client) as (qa, qb):
        handle = await start_probe(client, qb)  # a V2 run, moved back to V1 code that has no V2→V1 transform
        await signal_migrate(client, handle.id, qa)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        cause = failure.value.cause
        assert isinstance(cause, ApplicationError) and cause.non_retryable
        assert handle.id in cause.message and "no transform from state version 'probe/2'" in cause.message


async def test_checkpoint_continues_as_new_on_same_queue(time_env: WorkflowEnvironment) -> None:
    client = time_env.client
    async with workers(client) as (qa, _qb):
        handle = await start_probe(client, qa, ProbeStart(wait_s=600))
        before = await eventually(lambda: snap(client, handle), lambda s: "wake" in s.timers)
        await handle.signal(ProbeV1.add, 3)
        await handle.signal(ProbeV1.checkpoint)
        # Poll describe, not the query: a query racing the hand-over may reach the closed run, which the
        # time-skipping server answers only after a long timeout.
        await eventually(lambda: locate(client, handle.id), lambda where: where.run_id != before.run_id)
        after = await snap(client, handle)
        assert after.task_queue == qa and after.migrated_from == qa
        assert after.state["count"] == 3 and after.state_version == "probe/1"
        assert after.timers["wake"] == before.timers["wake"]


async def test_snapshot_query(time_env: WorkflowEnvironment) -> None:
    client = time_env.client
    async with workers(client) as (qa, _qb):
        handle = await start_probe(client, qa, ProbeStart(wait_s=60, note="n"))
        s = await eventually(lambda: snap(client, handle), lambda s: "wake" in s.timers)
        assert (s.workflow_id, s.task_queue, s.state_version) == (handle.id, qa, "probe/1")
        assert s.state["notes"] == ["n"] and s.state["count"] == 0
        assert s.pending_task_queue is None and not s.in_no_migrate
        assert s.migrated_from is None and s.migrated_at is None
        assert s.accepts == ["probe/1"]  # its own state version only: it declares no other
        raw = await handle.query("diachronic.v1.snapshot")  # JSON-able, camelCase on the wire
        assert set(raw) >= {"state", "timers", "pendingTaskQueue", "taskQueue", "stateVersion"}


async def test_a_declared_reverse_transform_moves_state_back(time_env: WorkflowEnvironment) -> None:
    """A roll-back's migrate-back: V2 state restored by V1 code that declares it accepts it (and says so)."""
    client = time_env.client
    qa, qb = f"probe-a-{uuid.uuid4()}", f"probe-b-{uuid.uuid4()}"
    async with (
        Worker(client, task_queue=qa, workflows=[ProbeV2]),
        Worker(client, task_queue=qb, workflows=[ProbeV1Back]),
    ):
        handle = await start_probe(client, qa, ProbeStart(note="n"))
        await handle.signal(ProbeV2.add, 4)
        await signal_migrate(client, handle.id, qb)
        await wait_for_task_queue(client, handle.id, qb, timeout=10)
        back = await snap(client, handle)
        assert (back.state_version, back.accepts) == ("probe/1", ["probe/1", "probe/2"])
        assert back.state["count"] == 4 and back.state["notes"] == ["n"]
        await handle.signal(ProbeV1.finish)
        assert (await handle.result()).version == "v1"


async def test_non_migratory_workflow_is_unaffected(time_env: WorkflowEnvironment) -> None:
    client = time_env.client
    queue = f"plain-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[PlainProbe]):
        handle = await client.start_workflow(PlainProbe.run, id=f"plain-{uuid.uuid4()}", task_queue=queue)
        await signal_migrate(client, handle.id, "somewhere-else")
        await handle.signal(PlainProbe.ping)
        await handle.signal(PlainProbe.finish)
        assert await client.get_workflow_handle(handle.id, run_id=handle.result_run_id).result() == 1
        where = await locate(client, handle.id)
        assert (where.run_id, where.task_queue) == (handle.result_run_id, queue)


async def test_workflow_cancellation_reaches_main(time_env: WorkflowEnvironment) -> None:
    client = time_env.client
    async with workers(client) as (qa, _qb):
        handle = await start_probe(client, qa, ProbeStart(wait_s=3600))
        await eventually(lambda: snap(client, handle), lambda s: "wake" in s.timers)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        assert isinstance(failure.value.cause, CancelledError)
