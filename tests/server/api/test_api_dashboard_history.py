"""The power history ring: 10 s cadence, one hour bounded, gaps for bad values, memory bounded for many devices."""

from __future__ import annotations

import itertools
import sys
from types import MappingProxyType

from server.api.history import INTERVAL, POWER_POINTS, SIZE, PowerHistory
from server.bus import DeviceEvent, Point, Quality, Snapshot

WALL0 = 1_700_000_000.0


def snap(device: str, mono: float, online: bool = True, **powers: float | None) -> Snapshot:
    """A snapshot at monotonic `mono` (wall time moves in step) with the given power points."""
    points = {
        name.replace("__", "."): Point(v, "W", Quality.OK if v is not None else Quality.NA)
        for name, v in powers.items()
    }
    points["grid.voltage_l1_v"] = Point(230.0, "V")  # not a power point: never kept
    return Snapshot(device, WALL0 + mono, mono, online, MappingProxyType(points), "sma")


def test_power_points_are_the_measured_watts() -> None:
    assert set(POWER_POINTS) == {"pv.power_w", "inverter.power_w", "grid.power_w", "battery.power_w"}


def test_samples_every_10s_whatever_the_poll_interval() -> None:
    h = PowerHistory()
    for k in range(31):  # polls every 2 s for 60 s
        h.on_snapshot(snap("inv", 2.0 * k, pv__power_w=float(k)))
    got = h.get("inv", 60, WALL0 + 60)
    assert got is not None
    assert [t - WALL0 for t in got["t"]] == [0, 10, 20, 30, 40, 50, 60]
    assert got["series"] == {"pv.power_w": [0, 5, 10, 15, 20, 25, 30]}
    assert got["units"] == {"pv.power_w": "W"}
    # Polls every 3 s: 10 s apart on average, never closer than 10 s less one poll interval.
    h = PowerHistory()
    for k in range(41):
        h.on_snapshot(snap("m", 3.0 * k, grid__power_w=1.0))
    t = h.get("m", 60, WALL0 + 120)["t"]
    gaps = [b - a for a, b in itertools.pairwise(t)]
    assert min(gaps) >= INTERVAL - 3 and abs((t[-1] - t[0]) / len(gaps) - INTERVAL) < 1.5


def test_ring_keeps_the_last_hour_only_and_minutes_cuts() -> None:
    h = PowerHistory()
    for k in range(SIZE + 100):
        h.on_snapshot(snap("inv", INTERVAL * k, pv__power_w=float(k)))
    now = WALL0 + INTERVAL * (SIZE + 99)
    got = h.get("inv", 60, now)
    assert len(got["t"]) == SIZE and got["series"]["pv.power_w"][0] == 100 and got["series"]["pv.power_w"][-1] == 459
    assert got["t"] == sorted(got["t"])
    assert len(h.get("inv", 5, now)["t"]) == 31  # 5 minutes of 10 s samples, both ends included


def test_offline_and_bad_values_are_gaps_not_zeros() -> None:
    h = PowerHistory()
    h.on_snapshot(snap("inv", 0, pv__power_w=100.0, grid__power_w=-50.0))
    h.on_snapshot(snap("inv", 10, online=False, pv__power_w=100.0, grid__power_w=-50.0))
    h.on_snapshot(snap("inv", 20, pv__power_w=None, grid__power_w=-40.0))
    got = h.get("inv", 60, WALL0 + 20)
    assert got["series"] == {"pv.power_w": [100, None, None], "grid.power_w": [-50, None, -40]}


def test_devices_without_power_points_have_no_history_and_removed_devices_are_forgotten() -> None:
    h = PowerHistory()
    h.on_snapshot(snap("thermo", 0))
    assert h.get("thermo", 60, WALL0) is None and h.devices() == []
    h.on_snapshot(snap("inv", 0, pv__power_w=1.0))
    assert h.devices() == ["inv"]
    h.on_event(DeviceEvent("device.removed", WALL0, "inv"))
    assert h.devices() == []


def test_memory_is_bounded_for_many_devices() -> None:
    h = PowerHistory(max_devices=64)
    for d in range(80):  # more devices than kept: the longest-silent ones go
        for k in range(SIZE + 5):
            h.on_snapshot(
                snap(
                    f"d{d}",
                    INTERVAL * k + d * 0.001,
                    pv__power_w=1.0,
                    inverter__power_w=2.0,
                    grid__power_w=3.0,
                    battery__power_w=4.0,
                )
            )
    assert len(h.devices()) == 64 and "d79" in h.devices() and "d0" not in h.devices()
    # Fixed-size float arrays: 5 arrays x 360 x 8 bytes (+ array overhead) per device; 50 devices < 1 MB.
    total = sum(
        sys.getsizeof(r.ts) + sum(sys.getsizeof(a) for a in r.values.values())
        for r in h._rings.values()  # the storage itself
    )
    per_device = total / 64
    assert per_device < 5 * (SIZE * 8 + 400)
    assert 50 * per_device < 1_000_000
