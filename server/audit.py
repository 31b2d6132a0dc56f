"""The audit log: every action taken on the gateway (who, what, when, result, revert), bounded and persisted.

Recording never blocks the caller: the entry is in memory at once (so the dashboard and
`GET /api/actions` see it) and reaches SQLite on the engine's "audit" lane. At start the
newest entries are loaded back, so the history survives restarts.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.engine import TaskClass

if TYPE_CHECKING:
    from server.gateway import Gateway

log = logging.getLogger("ohm.audit")
KEEP = 1000  # entries kept in memory and on disk


@dataclass(frozen=True)
class Action:
    """One audit entry. `who` names the actor (e.g. "admin@192.168.1.20", "backend", "schedule:7")."""

    id: int
    at: float  # wall-clock seconds
    who: str
    what: str
    result: str  # "ok", "refused: ...", "failed: ...", an HTTP status, ...
    detail: dict[str, Any] = field(default_factory=dict)
    revert: str | None = None  # what undoing it did, once it happened

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class AuditLog:
    """Bounded, thread-safe action history with listeners; persisted to SQLite when given a path."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        keep: int = KEEP,
        persist: Callable[[Callable[[], None]], None] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._items: deque[Action] = deque(maxlen=keep)
        self._keep = keep
        self._listeners: list[Callable[[Action], None]] = []
        self._wall = wall
        self._path = path
        # How a write reaches disk: by default inline; the service passes an engine-lane offload.
        self._persist = persist or (lambda job: job())
        self._next = 1
        if path is not None:
            self._load(path)

    # ---- public -------------------------------------------------------------------------

    def record(
        self, who: str, what: str, result: str, *, detail: dict[str, Any] | None = None, revert: str | None = None
    ) -> Action:
        """Add an entry (in memory now, on disk soon) and tell the listeners."""
        with self._lock:
            entry = Action(self._next, self._wall(), who, what, result, dict(detail or {}), revert)
            self._next += 1
            self._items.append(entry)
        self._save(entry)
        self._notify(entry)
        return entry

    def update(self, action_id: int, *, result: str | None = None, revert: str | None = None) -> Action | None:
        """Change the result or revert note of an entry still kept (None if it has aged out)."""
        with self._lock:
            for i, old in enumerate(self._items):
                if old.id == action_id:
                    new = replace(
                        old,
                        result=old.result if result is None else result,
                        revert=old.revert if revert is None else revert,
                    )
                    self._items[i] = new
                    break
            else:
                return None
        self._save(new)
        self._notify(new)
        return new

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest `limit` entries, newest first."""
        with self._lock:
            items = list(self._items)[-limit:] if limit > 0 else []
        return [a.as_dict() for a in reversed(items)]

    def on_record(self, listener: Callable[[Action], None]) -> None:
        """Call `listener(action)` for every new or updated entry (keep it quick; it runs on the caller's thread)."""
        self._listeners.append(listener)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    # ---- internals ----------------------------------------------------------------------

    def _notify(self, entry: Action) -> None:
        for listener in list(self._listeners):
            try:
                listener(entry)
            except Exception:  # a broken listener must not break the actor
                log.exception("audit listener failed")

    def _connect(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=5, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS actions (id INTEGER PRIMARY KEY, at REAL, who TEXT, what TEXT,"
            " result TEXT, detail TEXT, revert TEXT)"
        )
        return db

    def _load(self, path: Path) -> None:
        try:
            db = self._connect(path)
            try:
                rows = db.execute(
                    "SELECT id, at, who, what, result, detail, revert FROM actions ORDER BY id DESC LIMIT ?",
                    (self._keep,),
                ).fetchall()
            finally:
                db.close()
        except sqlite3.Error as exc:
            # A damaged history must not stop the gateway: start empty, keep acting, say so once.
            log.error("audit log %s unreadable (%s); starting a new history", path, exc)
            self._path = None
            return
        for row in reversed(rows):
            detail = json.loads(row[5]) if row[5] else {}
            self._items.append(Action(row[0], row[1], row[2], row[3], row[4], detail, row[6]))
        self._next = (rows[0][0] + 1) if rows else 1

    def _save(self, entry: Action) -> None:
        path = self._path
        if path is None:
            return
        keep = self._keep

        def job() -> None:
            db = self._connect(path)
            try:
                with db:
                    db.execute(
                        "INSERT OR REPLACE INTO actions VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            entry.id,
                            entry.at,
                            entry.who,
                            entry.what,
                            entry.result,
                            json.dumps(entry.detail),
                            entry.revert,
                        ),
                    )
                    db.execute("DELETE FROM actions WHERE id <= ?", (entry.id - keep,))
            finally:
                db.close()

        self._persist(job)


def attach(gateway: Gateway) -> None:
    """Open the audit log in the data directory; writes go through the engine's "audit" lane."""
    engine = gateway.engine
    lane = engine.lane("audit", cls=TaskClass.HOUSEKEEPING)

    def persist(job: Callable[[], None]) -> None:
        def done(outcome: Any) -> None:
            if not outcome.ok:
                log.error("audit entry not saved: %s", outcome.error)

        # A stopped engine or a full lane comes back to `done` as an error outcome: logged, never raised.
        engine.offload(job, then=done, kind="audit.save", lane=lane)

    gateway.services["audit"] = AuditLog(Path(gateway.data_dir) / "audit.sqlite", persist=persist)
