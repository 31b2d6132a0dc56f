"""The outbox table and its bounds; synchronous, used from one lane (one thread at a time).

Every committed row survives kill -9 (WAL, synchronous=FULL). Bounds by bytes and age drop
the oldest telemetry first (command results are kept), and the drops are counted for good.

The `journal` table holds readings taken but not yet signed into a batch, written at poll time
(synchronous=NORMAL: survives kill -9; a power cut may lose the journal rows since the last FULL
commit, which the next batch commit makes durable). A batch is stored and its journal rows are
deleted in one transaction, so a reading is never both batched and still journaled.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

_T = TypeVar("_T")
RESERVE_BYTES = 512 * 1024  # disk space held back to make room when the disk fills
DISK_LOW = 1024 * 1024  # free disk below this: the outbox stops growing (drops oldest to take new rows)

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
CREATE TABLE IF NOT EXISTS journal (id INTEGER PRIMARY KEY AUTOINCREMENT, rec TEXT NOT NULL);
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
        # A small WAL (checkpointed every 256 kB and truncated back to that): it must fit on a nearly full disk.
        self._db.execute("PRAGMA wal_autocheckpoint=64")
        self._db.execute("PRAGMA journal_size_limit=262144")
        self._db.executescript(SCHEMA)
        self.bytes, self.rows = self._db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM outbox").fetchone()
        self.dropped = int(self.get_meta("dropped", "0"))
        self.journal_rows = self._db.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
        self.disk_full = 0  # writes the disk refused (each followed by dropping the oldest telemetry)
        self.pending_drops = 0
        # Ballast: space given back when the disk fills, so the deletes that make room can be written.
        self.reserve_path = self.path.with_name(self.path.name + ".reserve")
        self._writes = 0
        self.disk_cap: int | None = None  # bytes bound set by a nearly full disk (None = only max_bytes)
        self._ensure_reserve()
        self._check_disk()

    # ---- writing ----------------------------------------------------------------------

    def put(
        self,
        topic: str,
        payload: bytes | str,
        *,
        prio: int = PRIO_LIVE,
        now: float,
        meta: dict[str, Any] | None = None,
        journal_upto: int | None = None,
    ) -> tuple[int, int]:
        """Queue a message and update `meta` in the same transaction; returns (row id, rows dropped now).

        `journal_upto`: also delete the journal rows up to that id (the readings this message carries).
        """
        data = payload.encode() if isinstance(payload, str) else payload
        return self._room_retry(lambda: self._put(topic, data, prio, now, meta, journal_upto), now)

    def _put(
        self, topic: str, data: bytes, prio: int, now: float, meta: dict[str, Any] | None, journal_upto: int | None
    ) -> tuple[int, int]:
        size = len(data) + len(topic)
        with self._lock, self._tx() as db:
            row_id = db.execute(
                "INSERT INTO outbox (prio, created, topic, payload, size) VALUES (?, ?, ?, ?, ?)",
                (prio, now, topic, data, size),
            ).lastrowid
            for key, value in (meta or {}).items():
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))
            if journal_upto is not None:
                gone = db.execute("DELETE FROM journal WHERE id <= ?", (journal_upto,)).rowcount
                self.journal_rows -= max(0, gone)
            self.bytes += size
            self.rows += 1
            dropped = self._enforce(db, now)
        return int(row_id or 0), dropped

    def journal_add(self, records: list[dict[str, Any]]) -> None:
        """Journal readings not yet batched, in one transaction that survives kill -9 (not a power cut)."""
        if not records:
            return
        self._room_retry(lambda: self._journal_add(records), None)

    def _journal_add(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            # NORMAL for this commit only: no fsync per poll (SD card wear); WAL keeps it across a process crash.
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._tx() as db:
                    db.executemany("INSERT INTO journal (rec) VALUES (?)", [(json.dumps(r),) for r in records])
                self.journal_rows += len(records)
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def journal_take(self, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        """The oldest `limit` journaled readings and the id of the last one (None if the journal is empty)."""
        with self._lock:
            rows = self._db.execute("SELECT id, rec FROM journal ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [json.loads(r[1]) for r in rows], (rows[-1][0] if rows else None)

    def _room_retry(self, write: Callable[[], _T], now: float | None) -> _T:
        """Run `write`; if the disk is full, drop the oldest telemetry to make room and try once more."""
        try:
            result = write()
        except sqlite3.OperationalError as exc:
            if not _disk_full(exc):
                raise
            self.disk_full += 1
            self.reserve_path.unlink(missing_ok=True)
            if not self._make_room():
                raise
            result = write()
        self._writes += 1
        self._check_disk()
        if self._writes % 200 == 0:
            self._ensure_reserve()  # the disk may have space again: take the ballast back
        return result

    def _check_disk(self) -> None:
        """Below DISK_LOW free, hold the outbox at its current size (new rows replace the oldest); lift above 2x."""
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return
        free = st.f_bavail * st.f_frsize
        if free < DISK_LOW and self.disk_cap is None:
            self.disk_cap = max(self.bytes, 64 * 1024)  # room for a few batches even when it was empty
        elif free > 2 * DISK_LOW:
            self.disk_cap = None

    def _ensure_reserve(self) -> None:
        if self.reserve_path.exists():
            return
        try:
            st = os.statvfs(self.path.parent)
            if st.f_bavail * st.f_frsize < 4 * RESERVE_BYTES:
                return  # not while the disk is (nearly) full
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, b"\0" * RESERVE_BYTES)
            finally:
                os.close(fd)
        except OSError:
            self.reserve_path.unlink(missing_ok=True)  # best effort: never a partial ballast

    def _make_room(self) -> int:
        """The disk is full: drop the oldest tenth of the telemetry (at least one row), counted as drops.

        Freed pages are reused by the next inserts, so the file stops growing; the WAL is folded back
        first so its space is free again. Command results are kept.
        """
        with self._lock:
            with contextlib.suppress(sqlite3.OperationalError):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            with self._tx() as db:
                cnt, size = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM (SELECT size FROM outbox WHERE prio > ? "
                    "ORDER BY id LIMIT ?)",
                    (PRIO_RESULT, max(1, self.rows // 10)),
                ).fetchone()
                if not cnt:
                    return 0
                db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE prio > ? ORDER BY id LIMIT ?)",
                    (PRIO_RESULT, cnt),
                )
                self.bytes -= size
                self.rows -= cnt
                self.dropped += cnt
                self.pending_drops += cnt
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('dropped', ?)", (str(self.dropped),))
            with contextlib.suppress(sqlite3.OperationalError):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(cnt)

    def take_pending_drops(self) -> int:
        """Drops made to free disk space since the last call (reported by the service like bound drops)."""
        n, self.pending_drops = self.pending_drops, 0
        return n

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
        bound = self.max_bytes if self.disk_cap is None else min(self.max_bytes, self.disk_cap)
        if self.bytes > bound:
            excess, freed, upto, count = self.bytes - bound, 0, None, 0
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
            "disk_full": self.disk_full,
            "disk_cap": self.disk_cap,
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
        if not exc_type:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error:
                if self.db.in_transaction:  # a failed COMMIT (disk full) must not leave it open
                    self.db.execute("ROLLBACK")
                raise
        if self.db.in_transaction:  # SQLITE_FULL (and a few others) roll back by themselves
            self.db.execute("ROLLBACK")


def _disk_full(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)


def _chunks(items: list[int], n: int) -> Iterable[list[int]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
