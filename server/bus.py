"""The data contract between harvest (devices) and its readers (uplink, API, dashboard, BLE).

A poller publishes an immutable Snapshot per device per poll; everyone else reads the latest
one or subscribes. Device state changes and other notable happenings are DeviceEvents.
Subscribers are called on the publishing thread and must not block: submit a task instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

log = logging.getLogger("ohm.bus")


class Quality(Enum):
    """How far a point's value can be trusted."""

    OK = "ok"
    STALE = "stale"  # last good value, the latest read failed
    OUT_OF_RANGE = "out_of_range"  # decoded, but outside the profile's plausible range
    NA = "n/a"  # the device says not available (sentinel such as 0x8000)


@dataclass(frozen=True, slots=True)
class Point:
    """One decoded value in canonical units (W, Wh, V, A, Hz, %, degC)."""

    value: float | int | str | None
    unit: str
    quality: Quality = Quality.OK


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one poll of one device produced; never mutated after publishing."""

    device_id: str
    ts: float  # wall time of the read (for the record)
    mono: float  # monotonic time of the read (for ages and cadence)
    online: bool
    points: Mapping[str, Point] = field(default_factory=lambda: MappingProxyType({}))
    profile: str = ""
    error: str | None = None

    def values(self) -> dict[str, float | int | str | None]:
        """Point name -> value, for compact records."""
        return {k: p.value for k, p in self.points.items()}


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """Something worth telling the owner and the backend: online, offline, recovered, ..."""

    kind: str
    ts: float
    device_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


class Bus:
    """Latest snapshot per device plus fan-out of snapshots and events (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, Snapshot] = {}
        self._snapshot_subs: list[Callable[[Snapshot], None]] = []
        self._event_subs: list[Callable[[DeviceEvent], None]] = []

    def publish(self, snapshot: Snapshot) -> None:
        """Record a snapshot as the device's latest and hand it to every subscriber."""
        with self._lock:
            self._latest[snapshot.device_id] = snapshot
            subs = list(self._snapshot_subs)
        for sub in subs:
            _safe(sub, snapshot)

    def emit(self, event: DeviceEvent) -> None:
        """Hand an event to every event subscriber."""
        with self._lock:
            subs = list(self._event_subs)
        for sub in subs:
            _safe(sub, event)

    def on_snapshot(self, fn: Callable[[Snapshot], None]) -> None:
        """Subscribe to every future snapshot."""
        with self._lock:
            self._snapshot_subs.append(fn)

    def on_event(self, fn: Callable[[DeviceEvent], None]) -> None:
        """Subscribe to every future event."""
        with self._lock:
            self._event_subs.append(fn)

    def latest(self, device_id: str | None = None) -> Snapshot | dict[str, Snapshot] | None:
        """The latest snapshot of one device, or of all of them."""
        with self._lock:
            if device_id is not None:
                return self._latest.get(device_id)
            return dict(self._latest)

    def forget(self, device_id: str) -> None:
        """Drop a removed device's latest snapshot."""
        with self._lock:
            self._latest.pop(device_id, None)


def _safe(fn: Callable[[Any], None], item: Any) -> None:
    try:
        fn(item)
    except Exception:  # one broken subscriber must not starve the others
        log.exception("bus subscriber %r failed", fn)
