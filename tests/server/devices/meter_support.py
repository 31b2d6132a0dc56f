"""Fixtures shared by the P1, HomeWizard and Envoy tests: a running device service and simulator cleanup."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from server.bus import Bus, Snapshot
from server.devices.service import DeviceService
from server.devices.store import DeviceStore
from server.engine import Engine


def running_service(tmp_path: Path) -> Iterator[DeviceService]:
    """A device service on a real engine thread with short timeouts and backoff (yield from it in a fixture)."""
    engine = Engine(workers=4)
    service = DeviceService(
        engine, Bus(), DeviceStore(tmp_path / "devices.sqlite"), backoff_base=0.2, backoff_cap=1.0, timeout=1.0
    )
    engine.start_thread()
    try:
        yield service
    finally:
        service.close()
        engine.stop()
        engine.wait_stopped(5)


def stopping() -> Iterator[list[Any]]:
    """Append simulators here; each is stopped at the end (yield from it in a fixture)."""
    started: list[Any] = []
    try:
        yield started
    finally:
        for s in started:
            s.stop()


def online(service: DeviceService, device_id: str) -> Callable[[], Snapshot | None]:
    """A wait_for condition: the device's latest snapshot when it is online."""

    def check() -> Snapshot | None:
        snap = service.snapshot(device_id)
        return snap if snap is not None and snap.online else None

    return check


def offline(service: DeviceService, device_id: str) -> Callable[[], Snapshot | None]:
    """A wait_for condition: the device's latest snapshot when it is offline."""

    def check() -> Snapshot | None:
        snap = service.snapshot(device_id)
        return snap if snap is not None and not snap.online else None

    return check
