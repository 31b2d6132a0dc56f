"""Battery charge/discharge as a control action against the simulator: sequence, battery effect, revert, REST, MQTT."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from modbus_slave.server import Simulator
from server.control.model import Invalid
from server.gateway import Gateway
from tests.server.api.conftest import Client
from tests.server.devices.test_device_commands_e2e import Backend
from tests.support import NOON, wait_for

from .conftest import Rig
from .test_control_api import http, mqtt_backend  # noqa: F401  (fixtures, with the simulator below)

pytestmark = pytest.mark.integration
POINT = "control.battery_power_w"
SUNGROW = {"mode": 13049, "command": 13050, "power": 13051}
SELF_CONSUMPTION = {"mode": 0, "command": 0xCC, "power": 0}
CHARGE, DISCHARGE = 0xAA, 0xBB


class RecordingSim(Simulator):
    """A simulator that remembers every register write in order (and can ignore writes to some registers)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[tuple[int, int]] = []
        self.ignore: set[int] = set()

    def _write(self, address: int, values: list[int]):  # type: ignore[no-untyped-def]
        self.writes.append((address, values[0]))
        if address in self.ignore:
            return None  # acknowledged, not taken (a device that drops a write)
        return super()._write(address, values)


class Clock:
    """The simulator's wall clock, moved by the test (SoC integrates over it)."""

    def __init__(self) -> None:
        self.t = NOON

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    """The simulator's clock."""
    return Clock()


@pytest.fixture(params=["sungrow"])
def sim(request: pytest.FixtureRequest, clock: Clock) -> Iterator[RecordingSim]:
    """A simulated hybrid (Sungrow SH unless a test parametrizes `sim`)."""
    s = RecordingSim(request.param, clock=clock)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def regs(sim: Simulator, where: dict[str, int] = SUNGROW) -> dict[str, int]:
    """The composite's holding registers as the device shows them now."""
    img = sim.image()
    return {role: img[(3, address)] for role, address in where.items()}


def soc(sim: Simulator) -> float:
    """Sungrow SoC (input register 13022, 0.1 %)."""
    return sim.image()[(4, 13022)] / 10


def test_timed_charge_takes_the_sequence_the_battery_follows_and_the_revert_is_on_time(
    rig: Rig, sim: RecordingSim, clock: Clock
) -> None:
    assert regs(sim) == SELF_CONSUMPTION
    before = soc(sim)
    action = rig.control.submit({"device": "inv", "point": POINT, "value": 5000, "duration_s": 600}, "a", "local")
    active = rig.settled(action.id, "active")
    assert (active.revert_to, active.revert_from) == (0, "read")  # self-consumption decoded from the registers
    # Power first, then the command, then the mode that engages them - in that order, once.
    assert sim.writes == [(13051, 5000), (13050, CHARGE), (13049, 2)]
    assert regs(sim) == {"mode": 2, "command": CHARGE, "power": 5000}
    assert sim.model.values(clock.t)["battery.power_w"] == -5000  # charging (+ discharge convention)
    clock.t += 600
    assert soc(sim) == pytest.approx(before + 5000 * 600 / 3600 / 10_000 * 100, abs=0.15)

    sim.writes.clear()
    rig.advance(599)
    assert rig.state(action.id) == "active" and sim.writes == []
    rig.advance(1)
    done = rig.settled(action.id, "reverted")
    assert "reverted to 0 (timer of 600 s ended)" in done.result
    assert sim.writes == [(13050, 0xCC), (13051, 0), (13049, 0)]
    assert regs(sim) == SELF_CONSUMPTION and sim.model.battery_cmd_w is None
    clock.t += 600
    after = soc(sim)
    clock.t += 60
    assert abs(soc(sim) - after) < 0.5  # back on its own curve, not forced any more
    entry = next(e for e in rig.audit.recent(10) if e["who"] == "a")
    assert entry["what"].startswith("set control.battery_power_w=5000 on inv for 600 s")
    assert entry["revert"] == "reverted to 0 (timer of 600 s ended)"


def test_a_forced_state_before_is_restored_and_an_unknown_one_gives_the_safe_default(
    rig: Rig, sim: RecordingSim
) -> None:
    for address, value in ((13051, 2000), (13050, DISCHARGE), (13049, 2)):  # the owner's own forced discharge
        rig.write_raw(address, value)
    action = rig.control.submit({"device": "inv", "point": POINT, "value": 1000, "duration_s": 60}, "a", "local")
    assert (rig.settled(action.id, "active").revert_to, rig.control.get(action.id).revert_from) == (-2000, "read")
    rig.advance(60)
    rig.settled(action.id, "reverted")
    assert regs(sim) == {"mode": 2, "command": DISCHARGE, "power": 2000}

    rig.write_raw(13049, 0)  # mode self-consumption with a discharge command left over: no sequence matches
    action = rig.control.submit({"device": "inv", "point": POINT, "value": -500, "duration_s": 60}, "a", "local")
    active = rig.settled(action.id, "active")
    assert (active.revert_to, active.revert_from) == (0, "safe default")
    assert regs(sim) == {"mode": 2, "command": DISCHARGE, "power": 500}
    rig.advance(60)
    rig.settled(action.id, "reverted")
    assert regs(sim) == SELF_CONSUMPTION


def test_every_register_is_read_back(rig: Rig, sim: RecordingSim) -> None:
    sim.ignore = {13049}  # the device drops the mode write: power and command took, forced mode did not
    action = rig.control.submit({"device": "inv", "point": POINT, "value": 3000}, "a", "local")
    failed = rig.settled(action.id, "failed")
    assert "read-back mismatch: wrote 2 to control.battery_power_w:mode (register 13049), device reports 0" in (
        failed.result
    )
    assert sim.writes.count((13051, 3000)) == 3  # the whole sequence, 1 + write_retries times
    assert [e.detail["phase"] for e in rig.events if e.kind == "control_failed"] == ["apply"]


def test_bad_values_are_refused_before_any_write(rig: Rig, sim: RecordingSim) -> None:
    with pytest.raises(Invalid, match="outside"):
        rig.control.submit({"device": "inv", "point": POINT, "value": -12000}, "a", "local")
    with pytest.raises(Invalid, match="step 10"):
        rig.control.submit({"device": "inv", "point": POINT, "value": 1234}, "a", "local")
    assert sim.writes == []


@pytest.mark.parametrize("sim", ["goodwe"], indirect=True)
def test_goodwe_battery_power_reading_follows_the_command(rig: Rig, sim: RecordingSim) -> None:
    def battery_power() -> float:
        box: list[Any] = []
        rig.gateway.services["devices"].read_raw("inv", 3, 35182, 2, box.append, type="int32")
        return rig.pump(lambda: box and box[0]).unwrap()["value"]

    action = rig.control.submit({"device": "inv", "point": POINT, "value": -3000, "duration_s": 30}, "a", "local")
    rig.settled(action.id, "active")
    assert sim.writes == [(47512, 3000), (47511, 12)]
    assert battery_power() == 3000  # discharging 3 kW, + discharge as GoodWe reports it
    rig.advance(30)
    rig.settled(action.id, "reverted")
    assert sim.writes[2:] == [(47511, 1), (47512, 0)]
    assert battery_power() != 3000 and sim.model.battery_cmd_w is None


def test_rest_battery_action_is_a_201_and_reverts(
    http: tuple[Client, Client, Gateway],  # noqa: F811
    sim: RecordingSim,
) -> None:
    admin, reader, _gw = http
    points = reader.call("GET", "/api/control/points").json["points"]
    assert [(p["point"], p["min"], p["max"], p["step"], p["safe_default"]) for p in points] == [
        (POINT, -10000.0, 10000.0, 10.0, 0.0)
    ]
    got = admin.call("POST", "/api/actions", {"device": "inv", "point": POINT, "value": 2500, "duration_s": 600})
    assert got.status == 201 and got.json["action"]["state"] == "active", got.json
    assert regs(sim) == {"mode": 2, "command": CHARGE, "power": 2500}
    bad = admin.call("POST", "/api/actions", {"device": "inv", "point": POINT, "value": 2505})
    assert bad.status == 422 and "step 10" in bad.json["detail"]
    assert admin.call("DELETE", f"/api/actions/{got.json['action']['id']}").status == 200
    wait_for(lambda: regs(sim) == SELF_CONSUMPTION)


def test_mqtt_control_set_drives_the_battery(mqtt_backend: tuple[Backend, Gateway], sim: RecordingSim) -> None:  # noqa: F811
    bk, _gw = mqtt_backend
    got = bk.ask("control.set", {"device": "inv", "point": POINT, "value": -4000, "lease_s": 30})
    assert got["ok"] is True, got
    assert got["result"]["action"]["revert_to"] == 0
    assert regs(sim) == {"mode": 2, "command": DISCHARGE, "power": 4000}
    refused = bk.ask("control.set", {"device": "inv", "point": POINT, "value": 10010})
    assert refused["ok"] is False and "outside" in refused["reason"]
    assert bk.ask("control.cancel", {"id": got["result"]["action"]["id"]})["ok"] is True
    wait_for(lambda: regs(sim) == SELF_CONSUMPTION)
