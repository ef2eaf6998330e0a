"""The embedded SQLite flag store: the shared contract suite, plus what only a file shared by processes needs."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.synchronize
import sqlite3
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.flag_contract import FlagStoreContract

from diachronic.errors import ConcurrentEdit, FlagStoreError, InvalidInput, NotFound
from diachronic.flags import GENERAL_TRAFFIC_TITLE, FlagStore
from diachronic.flags.evaluation import general_percent
from diachronic.flags.local import SQLITE_ERRORS, LocalFlagStore, map_sqlite_error
from diachronic.versions import flag_name, parse_flag_name


class LocalHuman(LocalFlagStore):
    """A human's edits: a second store on the same file (another connection, as another process would hold)."""

    async def seed_flag(
        self, name: str, *, general_percent: int = 0, enabled: bool = True, archived: bool = False
    ) -> None:
        await self.put_flag(name, general_percent=general_percent, enabled=enabled, archived=archived)

    async def edit_percent(self, flag_name: str, percent: int) -> None:
        await self.set_general_percent(flag_name, percent)


class LocalHarness:
    """``FlagHarness`` for ``LocalFlagStore``."""

    def __init__(self, store: LocalFlagStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.local = store
        self.store: FlagStore = store
        self.human = LocalHuman(store.path)
        self.monkeypatch = monkeypatch

    def edit_during_next_write(self, flag_name: str, percent: int) -> None:
        """The store reads nothing before its conditional UPDATE: the latest moment is just before its transaction."""
        write = self.local._write

        async def edit_then_write(action: str, fn: Any) -> Any:
            self.monkeypatch.setattr(self.local, "_write", write)
            await self.human.edit_percent(flag_name, percent)
            return await write(action, fn)

        self.monkeypatch.setattr(self.local, "_write", edit_then_write)

    async def settle(self) -> None:
        return None

    async def close(self) -> None:
        await self.human.close()
        await self.local.close()


class TestLocalFlagStoreContract(FlagStoreContract):
    @pytest.fixture
    async def harness(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LocalHarness]:
        harness = LocalHarness(LocalFlagStore(tmp_path / "data" / "flags.sqlite3"), monkeypatch)
        yield harness
        await harness.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalFlagStore]:
    s = LocalFlagStore(tmp_path / "flags.sqlite3", environment="development")
    yield s
    await s.close()


# -- the file --------------------------------------------------------------------------------------------------


async def test_the_file_is_created_in_wal_mode_under_missing_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "flags.sqlite3"
    store = LocalFlagStore(path)
    await store.apply_version_flag("wf", "v1")
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_two_stores_on_one_file_see_each_others_writes(tmp_path: Path) -> None:
    path = tmp_path / "flags.sqlite3"
    a, b = LocalFlagStore(path), LocalFlagStore(path)
    v1 = await a.apply_version_flag("wf", "v1")
    assert await b.route("wf", "order-1") is None  # fills b's routing cache
    await a.set_general_percent(v1.flag_name, 100)
    assert await b.route("wf", "order-1") == v1  # the cache noticed a's commit
    v2 = await b.apply_version_flag("wf", "v2")
    assert [f.info for f in await a.list_version_flags("wf")] == [v2, v1]
    await a.close()
    await b.close()


async def test_the_environment_is_stamped_on_every_version(store: LocalFlagStore) -> None:
    info = await store.apply_version_flag("wf", "v1")
    assert info.environment == "development"
    assert (await store.list_version_flags("wf"))[0].info.environment == "development"


async def test_revision_counts_changes_only(store: LocalFlagStore) -> None:
    start = await store.revision()
    info = await store.apply_version_flag("wf", "v1")
    assert await store.revision() == start + 1
    await store.apply_version_flag("wf", "v1")  # redeploy of the newest: no change
    await store.set_general_percent(info.flag_name, 0)  # already 0: no change
    await store.archive_flag(info.flag_name)
    await store.archive_flag(info.flag_name)  # already archived: no change
    assert await store.revision() == start + 2


# -- inputs and errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("percent", [True, 5.5, "50", None], ids=["a bool", "a float", "a string", "None"])
async def test_percent_must_be_a_whole_number(store: LocalFlagStore, percent: object) -> None:
    info = await store.apply_version_flag("wf", "v1")
    with pytest.raises(InvalidInput):
        await store.set_general_percent(info.flag_name, percent)  # type: ignore[arg-type]


async def test_an_archived_flag_cannot_be_given_traffic(store: LocalFlagStore) -> None:
    info = await store.apply_version_flag("wf", "v1")
    await store.archive_flag(info.flag_name)
    with pytest.raises(NotFound):
        await store.set_general_percent(info.flag_name, 10)


async def test_human_edits_of_missing_strategies_are_not_found(store: LocalFlagStore) -> None:
    info = await store.apply_version_flag("wf", "v1")
    with pytest.raises(NotFound):
        await store.delete_strategy(info.flag_name, "no such title")
    with pytest.raises(NotFound):
        await store.disable_strategy(info.flag_name, "no such title")
    with pytest.raises(NotFound):
        await store.set_flag_enabled(flag_name("wf", 9, "x"), True)


async def test_disabling_every_strategy_switches_the_flag_off(store: LocalFlagStore) -> None:
    info = await store.apply_version_flag("wf", "v1")
    await store.disable_strategy(info.flag_name, GENERAL_TRAFFIC_TITLE)
    assert (await store.list_version_flags("wf"))[0].enabled
    await store.disable_strategy(info.flag_name, "Dark Deploy Strategy")
    assert not (await store.list_version_flags("wf"))[0].enabled
    await store.set_strategy_disabled(info.flag_name, "Dark Deploy Strategy", False)
    assert not (await store.list_version_flags("wf"))[0].enabled  # as in Unleash: re-enabling is explicit
    await store.set_flag_enabled(info.flag_name, True)
    assert await store.route("wf", "order-1", is_test=True) == info


async def test_revive_flag_keeps_content(store: LocalFlagStore) -> None:
    info = await store.apply_version_flag("wf", "v1")
    await store.set_general_percent(info.flag_name, 100)
    await store.archive_flag(info.flag_name)
    assert await store.workflow_names() == []
    await store.revive_flag(info.flag_name)
    [flag] = await store.list_version_flags("wf")
    assert general_percent(flag) == 100 and flag.enabled
    assert await store.workflow_names() == ["wf"]


async def test_malformed_names_are_logged_once(store: LocalFlagStore, caplog: pytest.LogCaptureFixture) -> None:
    await store.put_flag("workflow.wf.seqId.x.version.v1")
    with caplog.at_level(logging.WARNING, logger="diachronic.flags.local"):
        for _ in range(3):
            assert await store.list_version_flags("wf") == []
            assert await store.route("wf", "order-1") is None
    assert [r.getMessage() for r in caplog.records if "does not parse" in r.getMessage()] == [
        "skipping flag 'workflow.wf.seqId.x.version.v1': it looks like a version flag but does not parse: "
        "'workflow.wf.seqId.x.version.v1' has a non-numeric sequence id 'x'"
    ]


async def test_unreadable_strategies_are_skipped_in_lists(store: LocalFlagStore, tmp_path: Path) -> None:
    await store.apply_version_flag("wf", "v1")
    good = await store.apply_version_flag("wf", "v2")
    with sqlite3.connect(tmp_path / "flags.sqlite3") as conn:
        conn.execute("UPDATE flags SET strategies = '{not json' WHERE name = ?", (flag_name("wf", 0, "v1"),))
    assert [f.info for f in await store.list_version_flags("wf")] == [good]
    with pytest.raises(FlagStoreError) as raised:
        await store.get_strategies(flag_name("wf", 0, "v1"))
    assert not raised.value.retryable


def test_every_sqlite_error_maps_to_flag_store_error() -> None:
    """Meta-test: every class sqlite3 raises is named in ``SQLITE_ERRORS`` (each was decided on), and callers only
    ever see FlagStoreError, retryable for lock, busy and I/O trouble."""
    classes = [c for c in vars(sqlite3).values() if isinstance(c, type) and issubclass(c, sqlite3.Error)]
    assert {c.__name__ for c in classes} - set(SQLITE_ERRORS) == set()
    for cls in classes:
        mapped = map_sqlite_error(cls("boom"), "test")
        assert isinstance(mapped, FlagStoreError)
        assert mapped.retryable is SQLITE_ERRORS[cls.__name__]
    assert {c.__name__ for c in classes if SQLITE_ERRORS[c.__name__]} == {
        "IntegrityError", "InterfaceError", "OperationalError"
    }  # fmt: skip


async def test_a_locked_file_is_a_retryable_error(tmp_path: Path) -> None:
    path = tmp_path / "flags.sqlite3"
    store = LocalFlagStore(path, busy_timeout_s=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(FlagStoreError) as raised:
            await store.apply_version_flag("wf", "v1")
        assert raised.value.retryable
        assert await store.list_version_flags("wf") == []  # readers are not blocked by the writer (WAL)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert (await store.apply_version_flag("wf", "v1")).seq_id == 0
    await store.close()


def test_a_file_that_is_not_a_database_is_a_permanent_error(tmp_path: Path) -> None:
    path = tmp_path / "flags.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(FlagStoreError) as raised:
        LocalFlagStore(path)
    assert not raised.value.retryable


# -- concurrency -----------------------------------------------------------------------------------------------


async def test_concurrent_deploys_in_one_process_get_unique_seq_ids(store: LocalFlagStore) -> None:
    infos = await asyncio.gather(*(store.apply_version_flag("wf", f"v{i}") for i in range(20)))
    assert sorted(i.seq_id for i in infos) == list(range(20))


async def test_concurrent_conditional_writers_on_one_value_have_exactly_one_winner(tmp_path: Path) -> None:
    """Eight stores (eight connections, as eight processes would hold) write on the value they all read: SQLite
    checks the condition as it writes, so one wins and the others are refused with what it wrote."""
    path = tmp_path / "flags.sqlite3"
    stores = [LocalFlagStore(path) for _ in range(8)]
    info = await stores[0].apply_version_flag("wf", "v1")

    async def write(i: int) -> int | None:
        try:
            await stores[i].set_general_percent(info.flag_name, 10 + i, expected=0)
        except ConcurrentEdit as refused:
            return refused.found
        return None

    found = await asyncio.gather(*(write(i) for i in range(len(stores))))
    [winner] = [i for i, f in enumerate(found) if f is None]
    assert found.count(10 + winner) == len(stores) - 1
    assert general_percent(await stores[0].get_strategies(info.flag_name)) == 10 + winner
    for store in stores:
        await store.close()


def _percent(worker: int, index: int, versions: int) -> int:
    return (worker * versions + index) % 101


def _deploy_and_ramp(
    path: str, worker: int, versions: int, barrier: multiprocessing.synchronize.Barrier, errors: Path
) -> None:
    """One OS process: deploy its own versions, ramp each, and race the others on a shared version."""

    async def run() -> None:
        store = LocalFlagStore(Path(path))
        barrier.wait(timeout=60)
        for i in range(versions):
            info = await store.apply_version_flag("wf", f"p{worker}-v{i}")
            await store.set_general_percent(info.flag_name, _percent(worker, i, versions))
            await store.route("wf", f"order-{i}")
        barrier.wait(timeout=60)
        await store.apply_version_flag("shared", "same")
        await store.close()

    try:
        asyncio.run(run())
    except BaseException:
        errors.write_text(traceback.format_exc())
        barrier.abort()  # never leave the others waiting
        raise


def test_several_processes_share_one_file_safely(tmp_path: Path) -> None:
    path = tmp_path / "flags.sqlite3"
    LocalFlagStore(path)  # create the schema once, as the CLI would
    workers, versions = 4, 15
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    errors = [tmp_path / f"worker-{w}.err" for w in range(workers)]
    procs = [
        ctx.Process(target=_deploy_and_ramp, args=(str(path), w, versions, barrier, errors[w]), daemon=True)
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    for p in procs:
        if p.is_alive():
            p.terminate()
    assert [p.exitcode for p in procs] == [0] * workers, [e.read_text() for e in errors if e.exists()]

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        names = [r[0] for r in conn.execute("SELECT name FROM flags")]
    parsed = [parse_flag_name(n) for n in names]
    wf_seqs = sorted(seq for wf, seq, _ in parsed if wf == "wf")
    assert wf_seqs == list(range(workers * versions))  # unique, no gaps, nothing lost
    assert [v for wf, _, v in parsed if wf == "shared"] == ["same"]  # the racing duplicates were recognised

    async def check() -> None:
        store = LocalFlagStore(path)
        for flag in await store.list_version_flags("wf"):
            worker, index = flag.info.version_id.removeprefix("p").split("-v")
            assert general_percent(flag) == _percent(int(worker), int(index), versions)
            assert len(flag.strategies) == 2
        await store.close()

    asyncio.run(check())
