"""Actions in SQLite (WAL, synchronous=FULL): each change is one committed transaction, so kill -9 loses none."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path

from .model import OPEN, Action

log = logging.getLogger("ohm.control")
KEEP_FINISHED = 500  # finished actions kept on disk (the audit log holds the long history)


class ActionStore:
    """One table of actions by id; calls are serialised (the service runs them on one engine lane)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=5, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed revert is on disk before the device is written, even across a power cut.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS actions (id TEXT PRIMARY KEY, state TEXT NOT NULL, updated REAL NOT NULL,"
            " body TEXT NOT NULL)"
        )

    def put(self, action: Action) -> None:
        """Insert or replace one action atomically."""
        body = json.dumps(action.as_dict(), separators=(",", ":"))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO actions (id, state, updated, body) VALUES (?, ?, ?, ?)",
                    (action.id, action.state, action.updated, body),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def load_open(self) -> list[Action]:
        """Every action still open (scheduled, applying, active, reverting), oldest first; prunes old history."""
        placeholders = ",".join("?" * len(OPEN))
        with self._lock:
            rows = self._db.execute(
                f"SELECT body FROM actions WHERE state IN ({placeholders}) ORDER BY updated", tuple(OPEN)
            ).fetchall()
            self._db.execute(
                f"DELETE FROM actions WHERE state NOT IN ({placeholders}) AND id NOT IN"
                f" (SELECT id FROM actions WHERE state NOT IN ({placeholders}) ORDER BY updated DESC LIMIT ?)",
                (*OPEN, *OPEN, KEEP_FINISHED),
            )
        out = []
        for (body,) in rows:
            try:
                out.append(Action.from_dict(json.loads(body)))
            except (ValueError, TypeError) as exc:  # one damaged row must not stop the rest
                log.error("control: unreadable stored action skipped: %s", exc)
        return out

    def get(self, action_id: str) -> Action | None:
        """One action by id (tests and tools)."""
        with self._lock:
            row = self._db.execute("SELECT body FROM actions WHERE id = ?", (action_id,)).fetchone()
        return Action.from_dict(json.loads(row[0])) if row else None

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
