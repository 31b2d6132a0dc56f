"""A bounded in-memory log of recent records for GET /api/logs (the last N, oldest dropped first)."""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from server.config import FIELDS_BY_KEY

KEEP = 500  # records; a few hundred lines is what a person scrolls through, and memory stays small
LEVELS: tuple[str, ...] = tuple(FIELDS_BY_KEY["log_level"].choices or ())  # the same names as the log_level setting
FILTER_LEVELS = (*LEVELS, "critical")  # reading may also ask for the worst only


class RingLog(logging.Handler):
    """Keeps the last `keep` records as plain dicts; known secrets are masked before a record is stored."""

    def __init__(self, keep: int = KEEP, secrets: Iterable[str] = ()) -> None:
        super().__init__(logging.DEBUG)
        self._records: deque[dict[str, Any]] = deque(maxlen=keep)
        self._seq = itertools.count(1)
        self._mutex = threading.Lock()
        # A secret should never reach a log line; masking here is a second fence, not the first.
        self._secrets = [s for s in secrets if s]

    def emit(self, record: logging.LogRecord) -> None:
        """Store one record (never raises: a broken format string is stored as-is)."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call must not break the caller
            message = str(record.msg)
        for secret in self._secrets:
            message = message.replace(secret, "***")
        entry = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__  # the type only: traces stay in the real log
        with self._mutex:
            entry = {"seq": next(self._seq), **entry}
            self._records.append(entry)

    def recent(self, level: str | None = None, limit: int = KEEP) -> list[dict[str, Any]]:
        """The newest `limit` records at or above `level`, oldest first."""
        floor = logging.getLevelName(level.upper()) if level else 0
        with self._mutex:
            items = list(self._records)
        picked = [r for r in items if logging.getLevelName(r["level"].upper()) >= floor]
        return picked[-limit:] if limit > 0 else []


def set_root_level(level: str) -> str:
    """Set the root logger's level by name (one of LEVELS); returns the level before."""
    root = logging.getLogger()
    before = logging.getLevelName(root.level).lower()
    root.setLevel(level.upper())
    return before
