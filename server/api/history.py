"""Power history for the dashboard: per device, the canonical W points sampled every 10 s for the last hour.

Fed by `Bus.on_snapshot` on the poller's thread, so recording only does arithmetic under a lock.
Memory is fixed per series: float arrays of `size` slots (360 x 8 bytes), at most `max_devices`
devices, so 50 devices with four power points each stay well under a megabyte.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections.abc import Mapping
from typing import Any

from server.devices.points import CANONICAL

INTERVAL = 10.0  # seconds between samples
SIZE = 360  # samples kept per series: one hour at INTERVAL
MAX_DEVICES = 64  # beyond this the device not heard from longest is forgotten
# The measured power points of the profiles (control.* limits are settings, not measurements).
POWER_POINTS: tuple[str, ...] = tuple(
    name for name, (unit, _) in CANONICAL.items() if unit == "W" and not name.startswith("control.")
)
NAN = float("nan")


class Ring:
    """One device's samples: a timestamp array and one float array per point, `size` slots, overwritten in turn."""

    def __init__(self, points: tuple[str, ...], size: int) -> None:
        self.points = points
        self.size = size
        self.ts = array("d", bytes(8 * size))
        self.values = {p: array("d", bytes(8 * size)) for p in points}
        self.head = 0  # next slot to write
        self.count = 0
        self.next_due = -math.inf  # monotonic time of the next sample
        self.last_mono = -math.inf  # when the device was last heard from (for eviction)

    def add(self, ts: float, values: Mapping[str, float]) -> None:
        """Write one sample into the next slot (NaN where a point had no good value)."""
        i = self.head
        self.ts[i] = ts
        for p, arr in self.values.items():
            arr[i] = values.get(p, NAN)
        self.head = (i + 1) % self.size
        self.count = min(self.count + 1, self.size)

    def since(self, oldest_ts: float) -> tuple[list[float], dict[str, list[float | None]]]:
        """Timestamps and per-point values (None for gaps), oldest first, of samples at or after `oldest_ts`."""
        order = [(self.head - self.count + k) % self.size for k in range(self.count)]
        order = [i for i in order if self.ts[i] >= oldest_ts]
        series = {
            p: [None if math.isnan(arr[i]) else round(arr[i], 3) for i in order] for p, arr in self.values.items()
        }
        return [round(self.ts[i], 3) for i in order], series


class PowerHistory:
    """The last hour of power per device, sampled every `interval` s from bus snapshots (thread-safe)."""

    def __init__(self, *, interval: float = INTERVAL, size: int = SIZE, max_devices: int = MAX_DEVICES) -> None:
        self.interval = interval
        self.size = size
        self.max_devices = max_devices
        self._rings: dict[str, Ring] = {}
        self._lock = threading.Lock()

    def on_snapshot(self, snap: Any) -> None:
        """Bus subscriber: take a sample if this device's next one is due (offline or bad values become gaps)."""
        good: dict[str, float] = {}
        if snap.online:
            for name in POWER_POINTS:
                point = snap.points.get(name)
                if point is None or getattr(point.quality, "value", point.quality) != "ok":
                    continue
                if isinstance(point.value, int | float) and not isinstance(point.value, bool):
                    good[name] = float(point.value)
        present = tuple(p for p in POWER_POINTS if p in snap.points)
        with self._lock:
            ring = self._rings.get(snap.device_id)
            if ring is None or (present and present != ring.points):
                if not present:
                    return  # a device without power points (or offline before its first read): nothing to chart
                ring = self._new_ring(snap.device_id, present)
            ring.last_mono = snap.mono
            if snap.mono < ring.next_due:
                return
            # 10 s apart on average whatever the poll interval (polls every 3 s sample at 0, 12, 21, 30 ...);
            # after a silence (or at the first sample) the cadence starts afresh from now.
            late = snap.mono - ring.next_due
            ring.next_due = (ring.next_due if late < self.interval else snap.mono) + self.interval
            ring.add(snap.ts, good)

    def _new_ring(self, device_id: str, points: tuple[str, ...]) -> Ring:
        if device_id not in self._rings and len(self._rings) >= self.max_devices:
            stalest = min(self._rings, key=lambda d: self._rings[d].last_mono)
            del self._rings[stalest]
        ring = self._rings[device_id] = Ring(points, self.size)
        return ring

    def on_event(self, event: Any) -> None:
        """Bus event subscriber: forget a removed device's history."""
        if event.kind == "device.removed" and event.device_id is not None:
            self.forget(event.device_id)

    def forget(self, device_id: str) -> None:
        """Drop one device's history."""
        with self._lock:
            self._rings.pop(device_id, None)

    def devices(self) -> list[str]:
        """Devices with a history."""
        with self._lock:
            return sorted(self._rings)

    def get(self, device_id: str, minutes: float, now_wall: float) -> dict[str, Any] | None:
        """One device's samples of the last `minutes` (by wall time), or None if it has no history."""
        with self._lock:
            ring = self._rings.get(device_id)
            if ring is None:
                return None
            ts, series = ring.since(now_wall - minutes * 60.0)
        return {"t": ts, "series": series, "units": {p: "W" for p in series}}
