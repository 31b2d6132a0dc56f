"""Device events from the bus kept for the owner: a bounded list with ids, dismissed one by one."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

KEEP = 200  # notifications; the oldest go first so a flapping device cannot grow memory


def _plain(value: Any) -> Any:
    """A JSON-safe copy of an event detail value (odd objects become their text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


class Notifications:
    """Keeps the newest `keep` events as notifications with increasing integer ids (thread-safe)."""

    def __init__(self, keep: int = KEEP) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=keep)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def on_event(self, event: Any) -> None:
        """Bus subscriber: record one DeviceEvent (called on the emitting thread, so it only appends)."""
        note = {
            "kind": str(event.kind),
            "ts": event.ts,
            "device_id": event.device_id,
            "detail": _plain(event.detail or {}),
        }
        with self._lock:
            self._items.append({"id": next(self._ids), **note})

    def list(self) -> list[dict[str, Any]]:
        """Every kept notification, oldest first."""
        with self._lock:
            return list(self._items)

    def dismiss(self, note_id: int) -> bool:
        """Drop one notification; False if there is none with that id."""
        with self._lock:
            for item in self._items:
                if item["id"] == note_id:
                    self._items.remove(item)
                    return True
        return False
