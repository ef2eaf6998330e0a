"""The embedded flag store: version flags in one SQLite file under the data folder (``Settings.flags_db``).

It plays Unleash's part on a single machine, so the CLI, the CI worker and the HTTP apps (several processes)
share one file safely: WAL mode (readers never wait for the writer), a busy timeout, and every write is one
short ``BEGIN IMMEDIATE`` transaction, which also serializes the "read the newest seq id, insert the next"
step across processes, so sequence ids stay unique.

As in Unleash, the flag *name* is the database: workflow, sequence id and version are parsed from it on every
read, and strategies are stored in Unleash's wire shape (camelCase JSON, docs/architecture.md). Evaluation is
``diachronic.flags.evaluation``, i.e. exactly Unleash's ``flexibleRollout``.

Rules worth knowing (the contract suite ``tests/flag_contract.py`` checks them for every store):
- a redeploy of the version that already is the newest live flag returns it unchanged (percentages kept,
  defect 17); any other deploy creates the next sequence id, computed over archived flags too, so a sequence
  id is never reused; if the newest flag overall is an archived flag of this very version it is revived
  instead (fresh strategies, enabled);
- a flag whose name starts like a version flag of the workflow but does not parse is skipped and logged once;
- like Unleash's admin API, deleting a flag's last strategy or disabling all of them disables the flag;
- a compare-and-set of the general percentage (``set_general_percent(expected=...)``) is one conditional
  UPDATE: the condition is checked by SQLite as it writes, never read first and written after.

Sync sqlite calls are fast (well under a millisecond); reads run inline on the caller's thread (routing is on
the signaler's hot path), writes run in a worker thread because they may wait for another process's lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

from diachronic import versions
from diachronic.contracts import VersionInfo
from diachronic.errors import FlagStoreError, InvalidInput, NotFound, RetryTable, is_retryable
from diachronic.flags import (
    GENERAL_TRAFFIC_TITLE,
    FlagStrategy,
    VersionFlag,
    evaluation,
)
from diachronic.flags.evaluation import default_strategies, new_rollout, validate_percent

__all__ = ["SQLITE_ERRORS", "LocalFlagStore", "immediate_transaction", "map_sqlite_error"]

log = logging.getLogger(__name__)

R = TypeVar("R")

DEFAULT_BUSY_TIMEOUT_S = 10.0
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS flags (
    name        TEXT PRIMARY KEY,
    enabled     INTEGER NOT NULL,
    archived    INTEGER NOT NULL DEFAULT 0,
    strategies  TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0);
"""

# Compare-and-set of the general percentage in one statement: ``g`` is the first strategy named :kind and titled
# :title (``evaluation.general_strategy``'s rule); the row is updated only if that strategy is enabled and its
# rollout is exactly :expected (``evaluation.check_expected_percent``'s rule), and the flag is not archived.
_COMPARE_AND_SET = """
UPDATE flags
SET strategies = json_set(flags.strategies, '$[' || g.idx || '].parameters.rollout', :percent), updated_at = :now
FROM (
    SELECT j.key AS idx, j.value AS strategy FROM flags AS f, json_each(f.strategies) AS j
    WHERE f.name = :name AND json_extract(j.value, '$.name') = :kind AND json_extract(j.value, '$.title') = :title
    ORDER BY j.key LIMIT 1
) AS g
WHERE flags.name = :name AND flags.archived = 0
    AND json_extract(g.strategy, '$.parameters.rollout') = :expected
    AND NOT coalesce(json_extract(g.strategy, '$.disabled'), 0)
"""


SQLITE_ERRORS: RetryTable = {
    "Error": False,
    "InterfaceError": True,
    "DatabaseError": False,  # not a database, or a corrupt one
    "DataError": False,
    "OperationalError": True,  # locked, busy, disk I/O
    "IntegrityError": True,  # a constraint raced by another process: the retried call reads again
    "InternalError": False,
    "ProgrammingError": False,
    "NotSupportedError": False,
}
"""Every ``sqlite3.Error`` class, retryable or not (``tests/test_flags_local.py`` checks none is missing)."""


def map_sqlite_error(exc: sqlite3.Error, action: str) -> FlagStoreError:
    """The one translation of sqlite errors: lock/busy/I-O trouble is retryable, a corrupt file is not."""
    return FlagStoreError(f"local flag store: {action} failed: {exc}", retryable=is_retryable(exc, SQLITE_ERRORS))


@contextmanager
def _sqlite_errors(action: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise map_sqlite_error(exc, action) from exc


@contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (the write lock, taken up front: no other writer, in any process, until the end) ...
    ``COMMIT``; rolled back on any exception. For connections in autocommit mode (``isolation_level=None``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _with_ids(strategies: Sequence[FlagStrategy]) -> list[FlagStrategy]:
    """Strategies as stored: each with an id, as Unleash assigns them."""
    return [s if s.id else s.model_copy(update={"id": str(uuid.uuid4())}) for s in strategies]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _dump(strategies: Sequence[FlagStrategy]) -> str:
    return json.dumps([s.model_dump(mode="json", by_alias=True) for s in strategies])


def _load(raw: str) -> list[FlagStrategy]:
    data = json.loads(raw)
    if not isinstance(data, list):
        raise ValueError("strategies must be a JSON list")
    return [FlagStrategy.model_validate(item) for item in data]


Row = tuple[str, int, int, str]


class LocalFlagStore:
    """``FlagStore`` on a SQLite file, safe to share between processes; see the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        environment: str | None = None,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self.environment = environment
        self._busy_ms = int(busy_timeout_s * 1000)
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._warned: set[str] = set()
        self._cache: dict[str, tuple[int, list[VersionFlag]]] = {}
        with _sqlite_errors("open"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect()
            try:
                self._init_schema()
                self._reader = self._connect()
            except BaseException:
                self._writer.close()
                raise

    # -- connections ---------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit; every write opens its own BEGIN IMMEDIATE, reads see the latest
        # committed state. check_same_thread=False: writes run in worker threads, guarded by a lock.
        conn = sqlite3.connect(self.path, timeout=self._busy_ms / 1000, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _init_schema(self) -> None:
        with immediate_transaction(self._writer) as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _read(self, action: str, fn: Callable[[sqlite3.Connection], R]) -> R:
        with _sqlite_errors(action), self._read_lock:
            return fn(self._reader)

    def _write_sync(self, action: str, fn: Callable[[sqlite3.Connection], tuple[R, bool]]) -> R:
        """Run ``fn`` in one BEGIN IMMEDIATE transaction; bump the revision when it reports a change."""
        with _sqlite_errors(action), self._write_lock, immediate_transaction(self._writer) as conn:
            result, changed = fn(conn)
            if changed:
                conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
            return result

    async def _write(self, action: str, fn: Callable[[sqlite3.Connection], tuple[R, bool]]) -> R:
        return await asyncio.to_thread(self._write_sync, action, fn)

    # -- row helpers ---------------------------------------------------------------------------------------

    @staticmethod
    def _rows(conn: sqlite3.Connection, workflow_name: str, include_archived: bool) -> list[Row]:
        prefix = versions.flag_name_prefix(workflow_name)
        # substr, not LIKE: names contain '_' (a LIKE wildcard) and LIKE ignores case.
        sql = "SELECT name, enabled, archived, strategies FROM flags WHERE substr(name, 1, ?) = ?"
        if not include_archived:
            sql += " AND archived = 0"
        return list(conn.execute(sql, (len(prefix), prefix)))

    @staticmethod
    def _row(conn: sqlite3.Connection, name: str) -> Row | None:
        row = conn.execute("SELECT name, enabled, archived, strategies FROM flags WHERE name = ?", (name,)).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3])

    def _flag(self, row: Row) -> VersionFlag | None:
        """A parsed version flag, or None (logged once per name) for a name or content that does not parse."""
        name, enabled, archived, raw = row
        try:
            workflow_name, seq_id, version_id = versions.parse_flag_name(name)
            strategies = _load(raw)
        except (InvalidInput, ValueError) as exc:
            if name not in self._warned:
                self._warned.add(name)
                log.warning("skipping flag %r: it looks like a version flag but does not parse: %s", name, exc)
            return None
        return VersionFlag(
            info=versions.version_info(workflow_name, seq_id, version_id, self.environment),
            enabled=bool(enabled),
            archived=bool(archived),
            strategies=strategies,
        )

    def _flags(self, rows: list[Row]) -> list[VersionFlag]:
        return versions.sort_newest_first([f for f in map(self._flag, rows) if f is not None])

    @staticmethod
    def _existing(conn: sqlite3.Connection, name: str, *, allow_archived: bool = True) -> Row:
        row = LocalFlagStore._row(conn, name)
        if row is None or (row[2] and not allow_archived):
            state = "does not exist" if row is None else "is archived"
            raise NotFound(f"flag {name!r} {state}")
        return row

    @staticmethod
    def _save(
        conn: sqlite3.Connection,
        name: str,
        *,
        enabled: bool,
        archived: bool,
        strategies: Sequence[FlagStrategy],
    ) -> None:
        now = _now()
        conn.execute(
            "INSERT INTO flags (name, enabled, archived, strategies, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET enabled = excluded.enabled, archived = excluded.archived,"
            " strategies = excluded.strategies, updated_at = excluded.updated_at",
            (name, int(enabled), int(archived), _dump(_with_ids(strategies)), now, now),
        )

    @staticmethod
    def _strategies(row: Row) -> list[FlagStrategy]:
        try:
            return _load(row[3])
        except ValueError as exc:
            raise FlagStoreError(f"flag {row[0]!r} has unreadable strategies: {exc}", retryable=False) from exc

    # -- FlagStore -----------------------------------------------------------------------------------------

    async def list_version_flags(self, workflow_name: str, *, include_archived: bool = False) -> list[VersionFlag]:
        """The workflow's version flags, newest first (seq as numbers); malformed names skipped and logged."""
        rows = self._read("list flags", lambda c: self._rows(c, workflow_name, include_archived))
        return self._flags(rows)

    async def apply_version_flag(self, workflow_name: str, version_id: str) -> VersionInfo:
        """Make ``version_id`` the newest version (see the module docstring for redeploys and revivals)."""
        versions.flag_name(workflow_name, 0, version_id)  # validates both names before touching the file

        def apply(conn: sqlite3.Connection) -> tuple[VersionInfo, bool]:
            flags = self._flags(self._rows(conn, workflow_name, include_archived=True))
            action, info = versions.flag_to_apply(flags, workflow_name, version_id, self.environment)
            if action is versions.FlagApply.KEEP:
                return info, False
            strategies = default_strategies(info.flag_name)  # a revival starts afresh too: it is a new deployment
            self._save(conn, info.flag_name, enabled=True, archived=False, strategies=strategies)
            return info, True

        return await self._write("apply version flag", apply)

    async def get_strategies(self, flag_name: str) -> list[FlagStrategy]:
        """All strategies of the flag, disabled ones too (the admin view); ``NotFound`` if no such flag."""
        row = self._read("get strategies", lambda c: self._existing(c, flag_name))
        return self._strategies(row)

    async def set_general_percent(self, flag_name: str, percent: int, *, expected: int | None = None) -> None:
        """Set ``All other traffic`` to ``percent``; with ``expected``, as one conditional UPDATE (``FlagStore``).

        Without ``expected`` a deleted strategy is re-created and its ``disabled`` state is left as it is: a
        human's change wins over automation (docs/architecture.md).
        """
        validate_percent(percent)
        if expected is not None:
            await self._write(
                "set general percent", self._compare_and_set(flag_name, percent, validate_percent(expected))
            )
            return

        def update(conn: sqlite3.Connection) -> tuple[None, bool]:
            row = self._existing(conn, flag_name, allow_archived=False)
            strategies = self._strategies(row)
            general = evaluation.general_strategy(strategies)
            if general is None:
                strategies.append(new_rollout(flag_name, GENERAL_TRAFFIC_TITLE, percent))
            elif general.parameters.get("rollout") == str(percent):
                return None, False
            else:
                params = {**general.parameters, "rollout": str(percent)}
                strategies = [s.model_copy(update={"parameters": params}) if s is general else s for s in strategies]
            self._save(conn, flag_name, enabled=bool(row[1]), archived=False, strategies=strategies)
            return None, True

        await self._write("set general percent", update)

    def _compare_and_set(
        self, flag_name: str, percent: int, expected: int
    ) -> Callable[[sqlite3.Connection], tuple[None, bool]]:
        """The write of ``set_general_percent(expected=...)``: the condition is part of the UPDATE itself, so no
        other connection, thread or process can change the row between the check and the write. When it matches
        nothing, the same transaction reads the row to say why (``NotFound`` or ``ConcurrentEdit``)."""

        def update(conn: sqlite3.Connection) -> tuple[None, bool]:
            params = {
                "name": flag_name,
                "kind": evaluation.FLEXIBLE_ROLLOUT,
                "title": GENERAL_TRAFFIC_TITLE,
                "expected": str(expected),
                "percent": str(percent),
                "now": _now(),
            }
            if conn.execute(_COMPARE_AND_SET, params).rowcount == 1:
                return None, percent != expected
            row = self._existing(conn, flag_name, allow_archived=False)
            evaluation.check_expected_percent(flag_name, self._strategies(row), expected)
            raise FlagStoreError(  # the UPDATE's condition and check_expected_percent disagree: a bug of ours
                f"local flag store: the conditional write of {flag_name} matched nothing, yet its strategy "
                f"holds {expected}%",
                retryable=False,
            )

        return update

    async def archive_flag(self, flag_name: str) -> None:
        """Archive the flag: hidden from lists and routing; no-op if archived; ``NotFound`` if absent."""
        await self._switch("archive flag", flag_name, "archived", True)

    async def route(self, workflow_name: str, workflow_id: str, *, is_test: bool = False) -> VersionInfo | None:
        """The newest flag that is on for ``{userId: workflow_id, isTest}``; None if none is.

        The parsed flags are cached per workflow until any connection commits to the file (``data_version``).
        """
        flags = self._read("route", lambda c: self._live_flags(c, workflow_name))
        chosen = evaluation.choose(flags, workflow_id, is_test)
        return None if chosen is None else chosen.info

    async def close(self) -> None:
        with self._read_lock, self._write_lock:
            self._reader.close()
            self._writer.close()

    def _live_flags(self, conn: sqlite3.Connection, workflow_name: str) -> list[VersionFlag]:
        key = int(conn.execute("PRAGMA data_version").fetchone()[0])
        cached = self._cache.get(workflow_name)
        if cached is not None and cached[0] == key:
            return cached[1]
        flags = self._flags(self._rows(conn, workflow_name, include_archived=False))
        self._cache[workflow_name] = (key, flags)
        return flags

    # -- more than the port: change detection and human edits (tests, CLI) -----------------------------------

    @staticmethod
    def _revision(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
        return 0 if row is None else int(row[0])

    async def revision(self) -> int:
        """A counter bumped by every change made through any ``LocalFlagStore`` on this file (any process)."""
        return self._read("read revision", self._revision)

    async def workflow_names(self) -> list[str]:
        """Every workflow that has a live version flag, sorted."""
        names = self._read(
            "list workflows", lambda c: [r[0] for r in c.execute("SELECT name FROM flags WHERE archived = 0")]
        )
        found = set()
        for name in names:
            try:
                found.add(versions.parse_flag_name(name)[0])
            except InvalidInput:
                continue
        return sorted(found)

    async def revive_flag(self, flag_name: str) -> None:
        """Bring an archived flag back, strategies and enabled state as they were."""
        await self._switch("revive flag", flag_name, "archived", False)

    async def set_flag_enabled(self, flag_name: str, enabled: bool) -> None:
        """Turn the whole flag on or off in the environment (a disabled flag routes nothing)."""
        await self._switch("enable flag" if enabled else "disable flag", flag_name, "enabled", enabled)

    async def _switch(self, action: str, flag_name: str, column: Literal["archived", "enabled"], value: bool) -> None:
        """Set one of the flag's two switches; a no-op (no revision) when it already has that value."""

        def update(conn: sqlite3.Connection) -> tuple[None, bool]:
            row = self._existing(conn, flag_name)
            if bool(row[2] if column == "archived" else row[1]) == value:
                return None, False
            conn.execute(
                f"UPDATE flags SET {column} = ?, updated_at = ? WHERE name = ?", (int(value), _now(), flag_name)
            )
            return None, True

        await self._write(action, update)

    async def delete_strategy(self, flag_name: str, title: str) -> None:
        """Delete the strategies with this title; as in Unleash, deleting the last one disables the flag."""

        def update(conn: sqlite3.Connection) -> tuple[None, bool]:
            row = self._existing(conn, flag_name)
            strategies = self._strategies(row)
            kept = [s for s in strategies if s.title != title]
            if len(kept) == len(strategies):
                raise NotFound(f"flag {flag_name!r} has no strategy titled {title!r}")
            self._save(conn, flag_name, enabled=bool(row[1]) and bool(kept), archived=bool(row[2]), strategies=kept)
            return None, True

        await self._write("delete strategy", update)

    async def set_strategy_disabled(self, flag_name: str, title: str, disabled: bool = True) -> None:
        """Disable (or re-enable) the strategies with this title; as in Unleash, disabling the last active one
        disables the flag, and re-enabling a strategy does not re-enable the flag."""

        def update(conn: sqlite3.Connection) -> tuple[None, bool]:
            row = self._existing(conn, flag_name)
            strategies = self._strategies(row)
            if not any(s.title == title for s in strategies):
                raise NotFound(f"flag {flag_name!r} has no strategy titled {title!r}")
            strategies = [s.model_copy(update={"disabled": disabled}) if s.title == title else s for s in strategies]
            enabled = bool(row[1]) and not all(s.disabled for s in strategies)
            self._save(conn, flag_name, enabled=enabled, archived=bool(row[2]), strategies=strategies)
            return None, True

        await self._write("disable strategy", update)

    async def disable_strategy(self, flag_name: str, title: str) -> None:
        """Shorthand for ``set_strategy_disabled(flag_name, title, True)``."""
        await self.set_strategy_disabled(flag_name, title, True)

    async def put_flag(
        self,
        name: str,
        *,
        enabled: bool = True,
        archived: bool = False,
        general_percent: int = 0,
        strategies: Sequence[FlagStrategy] | None = None,
    ) -> None:
        """Create or overwrite a flag verbatim, any name, as a human could in Unleash (seeding, imports).

        Without ``strategies`` it gets the standard two, with ``All other traffic`` at ``general_percent``.
        """
        content = (
            list(strategies) if strategies is not None else default_strategies(name, general_percent=general_percent)
        )

        def put(conn: sqlite3.Connection) -> tuple[None, bool]:
            self._save(conn, name, enabled=enabled, archived=archived, strategies=content)
            return None, True

        await self._write("put flag", put)
