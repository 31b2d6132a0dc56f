"""The simulator over real TCP and a pty, with an injected clock and faults."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from pymodbus.client import ModbusSerialClient, ModbusTcpClient

from modbus_slave.faults import Fault, FaultError, parse_fault
from modbus_slave.model import PlantModel, daylight
from modbus_slave.server import Simulator
from server.devices.codec import unpack

NOON = 1_699_963_200.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def sma():
    clock = Clock(NOON)
    sim = Simulator("sma", port=0, clock=clock).start()
    client = ModbusTcpClient("127.0.0.1", port=sim.port, timeout=0.5, retries=0)
    try:
        assert client.connect()
        yield sim, client, clock
    finally:
        client.close()
        sim.stop()


def read_s32(client: ModbusTcpClient, address: int) -> int:
    r = client.read_input_registers(address, count=2, device_id=3)
    assert not r.isError(), r
    return unpack(r.registers, "int32")


def test_daylight_curve() -> None:
    assert daylight(NOON) == pytest.approx(1.0)
    assert daylight(NOON - 12 * 3600) == 0.0
    assert 0 < daylight(NOON - 3 * 3600) < 1


def test_energy_grows_with_power() -> None:
    model = PlantModel(NOON)
    e0 = model.values(NOON)["pv.energy_wh"]
    e1 = model.values(NOON + 3600)["pv.energy_wh"]
    assert 4900 < e1 - e0 <= 5000  # an hour around noon at ~5 kW
    night = PlantModel(NOON + 12 * 3600)
    n0 = night.values(NOON + 12 * 3600)
    n1 = night.values(NOON + 13 * 3600)
    assert n1["pv.energy_wh"] == n0["pv.energy_wh"]
    assert n1["grid.import_wh"] - n0["grid.import_wh"] == pytest.approx(300, abs=1)  # 800 W load - 500 W battery


@pytest.mark.integration
def test_tcp_values_follow_the_clock(sma) -> None:
    _, client, clock = sma
    assert read_s32(client, 30775) == 4800
    clock.t = NOON + 5 * 3600  # 17:00
    assert 0 < read_s32(client, 30775) < 4800


@pytest.mark.integration
def test_write_only_writable_points(sma) -> None:
    sim, client, _ = sma
    assert not client.write_registers(40915, [0, 3000], device_id=3).isError()
    assert sim.written == {40915: 0, 40916: 3000}
    bad = client.write_register(30775, 1, device_id=3)
    assert bad.isError() and bad.exception_code == 2


@pytest.mark.integration
def test_exception_and_silent_and_garbage_faults(sma) -> None:
    sim, client, _ = sma
    sim.set_fault(Fault("exception", 6))
    r = client.read_input_registers(30775, count=2, device_id=3)
    assert r.isError() and r.exception_code == 6
    sim.set_fault(Fault("silent"))
    with pytest.raises(Exception):  # noqa: B017 - pymodbus raises ModbusIOException on timeout
        client.read_input_registers(30775, count=2, device_id=3)
    sim.set_fault(None)
    client.close()
    assert client.connect()
    assert read_s32(client, 30775) == 4800


@pytest.mark.integration
def test_down_refuses_then_recovers(sma) -> None:
    sim, client, _ = sma
    sim.set_fault(Fault("down"))
    with pytest.raises(Exception):  # noqa: B017
        client.read_input_registers(30775, count=2, device_id=3)
    sim.set_fault(None)
    client.close()
    assert client.connect()
    assert read_s32(client, 30775) == 4800


@pytest.mark.integration
def test_rtu_over_pty_and_unknown_unit_is_silent() -> None:
    sim = Simulator("eastron_sdm630", rtu=True, clock=Clock(NOON)).start()
    client = ModbusSerialClient(sim.device, baudrate=115200, timeout=0.3, retries=0)
    try:
        assert client.connect()
        r = client.read_input_registers(0x34, count=2, device_id=1)
        assert unpack(r.registers, "float32") == pytest.approx(-1500)
        with pytest.raises(Exception):  # noqa: B017 - a real RS-485 slave does not answer other ids
            client.read_input_registers(0x34, count=2, device_id=9)
    finally:
        client.close()
        sim.stop()


@pytest.mark.integration
def test_several_devices_in_one_process() -> None:
    sims = [Simulator(p, clock=Clock(NOON)).start() for p in ("sma", "solaredge", "sunspec")]
    try:
        assert len({s.port for s in sims}) == 3
        for s in sims[1:]:
            c = ModbusTcpClient("127.0.0.1", port=s.port, timeout=0.5)
            try:
                c.connect()
                assert c.read_holding_registers(40000, count=2, device_id=1).registers == [0x5375, 0x6E53]
            finally:
                c.close()
    finally:
        for s in sims:
            s.stop()


def test_parse_fault() -> None:
    assert parse_fault("delay=0.5").value == 0.5
    assert parse_fault("garbage@0.2").rate == 0.2
    f = parse_fault("flap=3/2")
    assert (f.up, f.down) == (3.0, 2.0)
    assert f.is_down(lambda: 4.0) and not f.is_down(lambda: 1.0)
    with pytest.raises(FaultError):
        parse_fault("explode")


def test_cli_help_and_bad_profile() -> None:
    out = subprocess.run([sys.executable, "-m", "modbus_slave", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "--fault" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "modbus_slave", "--profile", "nope"], capture_output=True, text=True, timeout=30
    )
    assert bad.returncode == 2 and "no profile 'nope'" in bad.stderr


@pytest.mark.integration
def test_flap_pattern_alternates_service(sma) -> None:
    sim, client, _ = sma
    sim.set_fault(Fault("flap", up=0.4, down=0.4))
    outcomes = set()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and len(outcomes) < 2:
        client.close()
        try:
            client.connect()
            outcomes.add(not client.read_input_registers(30775, count=2, device_id=3).isError())
        except Exception:  # noqa: BLE001 - a refused/dropped connection is the "down" half
            outcomes.add(False)
        time.sleep(0.1)
    assert outcomes == {True, False}
