"""Which GitHub deliveries were already handled, in a small SQLite file under the data folder.

GitHub redelivers on timeouts and on a human's "Redeliver" click, with the same ``X-GitHub-Delivery`` id; a
redelivery must never start a second deployment. The id is *claimed* before the CI is signalled and marked
``started`` after, in one file shared by every process on the host (WAL, busy timeout, ``BEGIN IMMEDIATE``: the
same recipe as the embedded flag store), so it survives restarts and concurrent deliveries. A claim whose start
failed is released, so GitHub's retry can deploy; a claim left by a crashed process expires after
``stale_after_s``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from diachronic.errors import BackendError

__all__ = ["Delivery", "DeliveryLog"]

R = TypeVar("R")

PROCESSING = "processing"
STARTED = "started"
IGNORED = "ignored"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id    TEXT PRIMARY KEY,
    event          TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    detail         TEXT,
    workflow_name  TEXT,
    version_id     TEXT,
    run_id         TEXT,
    received_at    TEXT NOT NULL,
    updated_at     TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    event: str
    outcome: str  # processing, started or ignored
    detail: str | None
    workflow_name: str | None
    version_id: str | None
    run_id: str | None
    received_at: datetime
    updated_at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def _sqlite_errors(action: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as error:
        raise BackendError(f"webhook delivery log: {action} failed: {error}") from None


class DeliveryLog:
    def __init__(self, path: Path, *, stale_after_s: float = 120.0, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.stale_after = timedelta(seconds=stale_after_s)
        self._lock = threading.Lock()
        with _sqlite_errors("open"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            if self._conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute(_SCHEMA)

    def _transaction(self, action: str, fn: Callable[[sqlite3.Connection], R]) -> R:
        with _sqlite_errors(action), self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

    async def _run(self, action: str, fn: Callable[[sqlite3.Connection], R]) -> R:
        # A thread: BEGIN IMMEDIATE may wait for another process's write lock.
        return await asyncio.to_thread(self._transaction, action, fn)

    @staticmethod
    def _row(conn: sqlite3.Connection, delivery_id: str) -> Delivery | None:
        row = conn.execute(
            "SELECT delivery_id, event, outcome, detail, workflow_name, version_id, run_id, received_at, updated_at "
            "FROM deliveries WHERE delivery_id = ?",
            (delivery_id,),
        ).fetchone()
        if row is None:
            return None
        return Delivery(
            delivery_id=row[0],
            event=row[1],
            outcome=row[2],
            detail=row[3],
            workflow_name=row[4],
            version_id=row[5],
            run_id=row[6],
            received_at=datetime.fromisoformat(row[7]),
            updated_at=datetime.fromisoformat(row[8]),
        )

    async def claim(self, delivery_id: str, event: str, *, workflow_name: str, version_id: str) -> Delivery | None:
        """Claim the delivery for starting a deployment: None if it is ours now, else the earlier record."""

        def claim(conn: sqlite3.Connection) -> Delivery | None:
            now = _now()
            existing = self._row(conn, delivery_id)
            if existing is not None and not (
                existing.outcome == PROCESSING and now - existing.updated_at > self.stale_after
            ):
                return existing
            conn.execute(
                "INSERT OR REPLACE INTO deliveries (delivery_id, event, outcome, workflow_name, version_id, "
                "received_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (delivery_id, event, PROCESSING, workflow_name, version_id, now.isoformat(), now.isoformat()),
            )
            return None

        return await self._run("claim", claim)

    async def mark_started(self, delivery_id: str, run_id: str) -> None:
        def mark(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE deliveries SET outcome = ?, run_id = ?, updated_at = ? WHERE delivery_id = ?",
                (STARTED, run_id, _now().isoformat(), delivery_id),
            )

        await self._run("mark started", mark)

    async def release(self, delivery_id: str) -> None:
        """The start failed: forget the claim so GitHub's redelivery can deploy."""

        def release(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM deliveries WHERE delivery_id = ? AND outcome = ?", (delivery_id, PROCESSING))

        await self._run("release", release)

    async def record_ignored(self, delivery_id: str, event: str, detail: str) -> Delivery | None:
        """Record a delivery that is not acted on; returns the earlier record if the id was seen before."""

        def record(conn: sqlite3.Connection) -> Delivery | None:
            existing = self._row(conn, delivery_id)
            if existing is not None:
                return existing
            now = _now().isoformat()
            conn.execute(
                "INSERT INTO deliveries (delivery_id, event, outcome, detail, received_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (delivery_id, event, IGNORED, detail, now, now),
            )
            return None

        return await self._run("record", record)

    async def get(self, delivery_id: str) -> Delivery | None:
        return await self._run("read", lambda conn: self._row(conn, delivery_id))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
