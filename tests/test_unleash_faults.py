"""Unleash down or slow: every Admin API call fails with a retryable ``FlagStoreError``, routing carries on from
the last state fetched, and a retried call succeeds once Unleash is back (what an activity retry relies on).

These stop, freeze and restart the Unleash process of ``scripts/unleash/unleash.sh`` (PostgreSQL stays up), and
always leave it running.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator

import pytest
from tests.unleash_fixtures import HumanAdmin, UnleashServer, controllable_unleash, eventually

from diachronic.errors import FlagStoreError
from diachronic.flags.unleash import UnleashFlagStore

pytestmark = pytest.mark.unleash


@pytest.fixture(scope="module")
def server() -> Iterator[UnleashServer]:
    s = controllable_unleash()
    yield s
    if not s.healthy():
        s.start()


@pytest.fixture
async def wf(server: UnleashServer) -> AsyncIterator[str]:
    if not server.healthy():
        # Not this test's fault: say so loudly (with the server's own last words), bring it back, and go on.
        assert server.state_dir is not None
        node_log = server.state_dir / "node.log"
        tail = node_log.read_text()[-2000:] if node_log.exists() else "(no node.log)"
        warnings.warn(f"Unleash did not answer before the test; restarting it. End of node.log:\n{tail}", stacklevel=1)
        server.resume()
        server.start()
    name = f"fault-{uuid.uuid4().hex[:10]}"
    yield name
    if not server.healthy():
        server.resume()
        server.start()
    human = HumanAdmin(server)
    await human.delete_workflows([name])
    await human.close()


@pytest.fixture
async def store(server: UnleashServer) -> AsyncIterator[UnleashFlagStore]:
    s = server.store(timeout_s=1.0, refresh_s=0.2)
    yield s
    await s.close()


async def test_unleash_down_then_back(server: UnleashServer, store: UnleashFlagStore, wf: str) -> None:
    v1 = await store.apply_version_flag(wf, "v1")
    await store.set_general_percent(v1.flag_name, 100)
    await store.wait_for_routing(wf)
    server.stop_node()
    try:
        for call in (
            store.list_version_flags(wf, include_archived=True),
            store.apply_version_flag(wf, "v2"),
            store.set_general_percent(v1.flag_name, 50),
            store.get_strategies(v1.flag_name),
            store.archive_flag(v1.flag_name),
        ):
            with pytest.raises(FlagStoreError) as caught:
                await call
            assert caught.value.retryable, caught.value
            assert "cannot reach" in caught.value.message and server.url in caught.value.message

        # Routing keeps answering from the last state the client fetched (the Unleash SDKs' rule) ...
        assert await store.route(wf, "order-1") == v1
        # ... but a process that never fetched anything must not guess: it waits (retryable), never routes.
        fresh = server.store(timeout_s=1.0)
        try:
            with pytest.raises(FlagStoreError) as caught:
                await fresh.route(wf, "order-1")
            assert caught.value.retryable and "first flag data" in caught.value.message
        finally:
            await fresh.close()

        # The activity's retry succeeds once Unleash is back; the rollout's step is applied, not skipped.
        restart = asyncio.create_task(asyncio.to_thread(server.start))
        started = time.monotonic()
        v2 = await eventually(lambda: store.apply_version_flag(wf, "v2"), timeout_s=90)
        await eventually(lambda: store.set_general_percent(v2.flag_name, 10), timeout_s=30)
        await restart
    finally:
        if not server.healthy():
            server.start()
    assert time.monotonic() - started < 60
    flags = await store.list_version_flags(wf)
    assert [(f.info.version_id, f.info.seq_id) for f in flags] == [("v2", 1), ("v1", 0)]
    assert [s.parameters["rollout"] for s in flags[0].strategies] == ["100", "10"]


async def test_unleash_slow_is_a_retryable_timeout(server: UnleashServer, store: UnleashFlagStore, wf: str) -> None:
    v1 = await store.apply_version_flag(wf, "v1")
    server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(FlagStoreError) as caught:
            await store.set_general_percent(v1.flag_name, 30)
        assert time.monotonic() - started < 5
        assert caught.value.retryable and "did not answer within 1s" in caught.value.message

        loop = asyncio.get_running_loop()
        loop.call_later(1.0, server.resume)
        await eventually(lambda: store.set_general_percent(v1.flag_name, 30), timeout_s=30)
    finally:
        server.resume()
    [flag] = await store.list_version_flags(wf)
    assert [s.parameters["rollout"] for s in flag.strategies] == ["100", "30"]
