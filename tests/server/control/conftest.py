"""A gateway with audit, devices and control against the simulator; fake-clock and real-time flavours."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modbus_slave.server import Simulator
from server.audit import attach as audit
from server.bus import DeviceEvent
from server.config import load
from server.control import attach as control
from server.devices import attach as devices
from server.engine import FakeClock
from server.gateway import Gateway
from tests.support import wait_for

FAST_RETRY = 0.05  # s between write attempts in tests (the default is 0.5)


@dataclass
class Rig:
    """A gateway, its control service, the simulated device id and the bus events seen."""

    gateway: Gateway
    fake: bool
    events: list[DeviceEvent] = field(default_factory=list)

    @property
    def control(self) -> Any:
        """The control service."""
        return self.gateway.services["control"]

    @property
    def audit(self) -> Any:
        """The audit log."""
        return self.gateway.services["audit"]

    def pump(self, cond: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run engine tasks (fake clock: by hand, while workers do I/O) until `cond()` holds."""
        if not self.fake:
            return wait_for(cond, timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Fake time creeps on (10 ms a step) so retry delays pass; I/O completions arrive as tasks.
            self.gateway.engine.advance(0.01)
            value = cond()
            if value:
                return value
            time.sleep(0.005)
        raise AssertionError(f"condition not met within {timeout} s")

    def advance(self, seconds: float) -> None:
        """Move the fake clock (running timers on the way)."""
        self.gateway.engine.advance(seconds)

    def write_raw(self, address: int, value: float, device: str = "inv") -> None:
        """Write a point directly through the devices service (as the owner did before any action)."""
        box: list[Any] = []
        self.gateway.services["devices"].write_raw(device, address, value, box.append)
        outcome = self.pump(lambda: box and box[0])
        outcome.unwrap()

    def state(self, action_id: str) -> str | None:
        """The state of an action now."""
        action = self.control.get(action_id)
        return action.state if action is not None else None

    def settled(self, action_id: str, *states: str) -> Any:
        """Pump until the action is in one of `states`; returns it."""
        self.pump(lambda: self.state(action_id) in states)
        return self.control.get(action_id)


def make_gateway(data: Path, clock: Any = None) -> Gateway:
    """A gateway with the services control needs (no uplink, no API)."""
    cfg = load(None, env={}, overrides={"data_dir": data, "stats_interval": 0})
    return Gateway(cfg, clock, services=[audit, devices, control])


def add_device(gw: Gateway, sim: Simulator, device_id: str = "inv", interval: float = 60.0) -> None:
    """Add the simulator as a device (polling rarely: control does its own reads)."""
    gw.services["devices"].add(
        {"id": device_id, "profile": sim.profile.key, "host": "127.0.0.1", "port": sim.port, "interval": interval}
    )


def _rig(tmp_path: Path, sim: Simulator, fake: bool) -> Iterator[Rig]:
    gw = make_gateway(tmp_path / "gw", FakeClock() if fake else None)
    rig = Rig(gw, fake)
    gw.bus.on_event(rig.events.append)
    try:
        gw.start()
        gw.services["control"].retry_gap = FAST_RETRY
        if not fake:
            gw.engine.start_thread()
        add_device(gw, sim)
        yield rig
    finally:
        if fake and gw.engine.state == "new":
            gw.engine.start_thread()  # so the shutdown hooks (devices, control store) run as in production
        gw.stop()
        gw.engine.wait_stopped(5)


@pytest.fixture
def rig(tmp_path: Path, sim: Simulator) -> Iterator[Rig]:
    """Control on a fake clock (timers moved by the test; Modbus I/O real, in workers)."""
    yield from _rig(tmp_path, sim, fake=True)


@pytest.fixture
def live_rig(tmp_path: Path, sim: Simulator) -> Iterator[Rig]:
    """Control on a running engine and the real clock."""
    yield from _rig(tmp_path, sim, fake=False)


def limit_w(sim: Simulator) -> int:
    """The SMA power limit (uint32 at 40915, big word order) the simulator holds now."""
    img = sim.image()
    return (img[(3, 40915)] << 16) | img[(3, 40916)]
