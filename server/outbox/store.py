"""The outbox table and its bounds; synchronous, used from one lane (one thread at a time).

Every committed row survives kill -9 (WAL, synchronous=FULL). Bounds by bytes and age drop
the oldest telemetry first (command results are kept), and the drops are counted for good.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRIO_RESULT = 0  # command results: before anything else
PRIO_LIVE = 1  # telemetry and events; old ones count as backlog (see take())

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    prio INTEGER NOT NULL,
    created REAL NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_prio_id ON outbox (prio, id);
CREATE INDEX IF NOT EXISTS outbox_created ON outbox (created);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen_commands (id TEXT PRIMARY KEY, exp REAL NOT NULL);
"""


@dataclass(frozen=True)
class Row:
    """One queued message."""

    id: int
    prio: int
    created: float
    topic: str
    payload: bytes


class OutboxStore:
    """SQLite outbox bounded by `max_bytes` and `max_age` seconds (drop oldest, counted)."""

    def __init__(self, path: Path, *, max_bytes: int = 256 * 1024 * 1024, max_age: float = 30 * 86400.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._lock = threading.Lock()  # the lane serialises callers; this guards against misuse
        if not self.path.exists():
            self.path.touch(mode=0o600)  # telemetry and command ids are nobody else's business
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self.bytes, self.rows = self._db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM outbox").fetchone()
        self.dropped = int(self.get_meta("dropped", "0"))

    # ---- writing ----------------------------------------------------------------------

    def put(
        self, topic: str, payload: bytes | str, *, prio: int = PRIO_LIVE, now: float, meta: dict[str, Any] | None = None
    ) -> tuple[int, int]:
        """Queue a message and update `meta` in the same transaction; returns (row id, rows dropped now)."""
        data = payload.encode() if isinstance(payload, str) else payload
        size = len(data) + len(topic)
        with self._lock, self._tx() as db:
            row_id = db.execute(
                "INSERT INTO outbox (prio, created, topic, payload, size) VALUES (?, ?, ?, ?, ?)",
                (prio, now, topic, data, size),
            ).lastrowid
            for key, value in (meta or {}).items():
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))
            self.bytes += size
            self.rows += 1
            dropped = self._enforce(db, now)
        return int(row_id or 0), dropped

    def _enforce(self, db: sqlite3.Connection, now: float) -> int:
        """Drop telemetry older than max_age, then the oldest until under max_bytes; count the drops."""
        dropped = 0
        old = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox WHERE prio > ? AND created < ?",
            (PRIO_RESULT, now - self.max_age),
        ).fetchone()
        if old[0]:
            db.execute("DELETE FROM outbox WHERE prio > ? AND created < ?", (PRIO_RESULT, now - self.max_age))
            dropped += old[0]
            self.bytes -= old[1]
            self.rows -= old[0]
        if self.bytes > self.max_bytes:
            excess, freed, upto, count = self.bytes - self.max_bytes, 0, None, 0
            for row_id, size in db.execute("SELECT id, size FROM outbox WHERE prio > ? ORDER BY id", (PRIO_RESULT,)):
                freed += size
                count += 1
                upto = row_id
                if freed >= excess:
                    break
            if upto is not None:
                db.execute("DELETE FROM outbox WHERE prio > ? AND id <= ?", (PRIO_RESULT, upto))
                dropped += count
                self.bytes -= freed
                self.rows -= count
        if dropped:
            self.dropped += dropped
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('dropped', ?)", (str(self.dropped),))
        return dropped

    def delete(self, ids: Iterable[int]) -> int:
        """Remove acknowledged rows; returns how many were still there."""
        ids = list(ids)
        if not ids:
            return 0
        removed = 0
        with self._lock, self._tx() as db:
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                cnt, size = db.execute(
                    f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox WHERE id IN ({marks})", chunk
                ).fetchone()
                db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)
                removed += cnt
                self.bytes -= size
                self.rows -= cnt
        return removed

    def remember_command(self, cmd_id: str, exp: float, now: float) -> bool:
        """Record a command id until its expiry; False if it was seen before (a replay)."""
        with self._lock, self._tx() as db:
            db.execute("DELETE FROM seen_commands WHERE exp < ?", (now,))
            try:
                db.execute("INSERT INTO seen_commands (id, exp) VALUES (?, ?)", (cmd_id, exp))
            except sqlite3.IntegrityError:
                return False
        return True

    # ---- reading ----------------------------------------------------------------------

    def take(
        self,
        limit: int,
        *,
        exclude: Collection[int] = (),
        created_after: float | None = None,
        created_before: float | None = None,
    ) -> list[Row]:
        """Up to `limit` rows not in `exclude`, command results first, then by id.

        `created_after`: live rows (results, and telemetry at least that recent);
        `created_before`: backlog (telemetry older than that). Each part is one indexed query,
        so a live fetch stays cheap however long the backlog is.
        """
        parts: list[tuple[str, list[Any]]] = []
        if created_before is not None:
            parts.append(("prio > ? AND created < ? ORDER BY prio, id", [PRIO_RESULT, created_before]))
        else:
            parts.append(("prio = ? ORDER BY id", [PRIO_RESULT]))
            if created_after is not None:
                parts.append(("prio > ? AND created >= ? ORDER BY created, id", [PRIO_RESULT, created_after]))
            else:
                parts.append(("prio > ? ORDER BY prio, id", [PRIO_RESULT]))
        skip = ""
        if exclude:
            skip = f"id NOT IN ({','.join('?' * len(exclude))}) AND "
        out: list[Row] = []
        with self._lock:
            for cond, args in parts:
                if len(out) >= limit:
                    break
                sql = f"SELECT id, prio, created, topic, payload FROM outbox WHERE {skip}{cond} LIMIT ?"
                out += [Row(*r) for r in self._db.execute(sql, [*exclude, *args, limit - len(out)])]
        return out

    def get_meta(self, key: str, default: Any = None) -> Any:
        """A value stored with put(meta=...)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def stats(self, now: float) -> dict[str, Any]:
        """Rows, bytes, drops and the age of the oldest row."""
        with self._lock:
            oldest = self._db.execute("SELECT MIN(created) FROM outbox").fetchone()[0]
        return {
            "rows": self.rows,
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "dropped": self.dropped,
            "oldest_age_s": None if oldest is None else round(now - oldest, 3),
        }

    def close(self) -> None:
        """Close the database (a checkpoint folds the WAL back)."""
        with self._lock:
            self._db.close()

    def _tx(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _chunks(items: list[int], n: int) -> Iterable[list[int]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
