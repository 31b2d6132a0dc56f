"""Pollers and the device service against the simulator over real TCP and a pty."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modbus_slave.faults import Fault
from modbus_slave.server import Simulator
from server.bus import Bus, DeviceEvent, Quality, Snapshot
from server.devices.profile import profile_names
from server.devices.service import DeviceService, WriteRejected
from server.devices.store import DeviceConfigError, DeviceStore
from server.engine import Engine, Outcome
from tests.support import wait_for

pytestmark = pytest.mark.integration
NOON = 1_699_963_200.0


def fixed(t: float = NOON) -> Callable[[], float]:
    return lambda: t


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[DeviceService]:
    engine = Engine(workers=4)
    service = DeviceService(
        engine, Bus(), DeviceStore(tmp_path / "devices.sqlite"), backoff_base=0.2, backoff_cap=1.0, timeout=0.5
    )
    engine.start_thread()
    try:
        yield service
    finally:
        service.close()
        engine.stop()
        engine.wait_stopped(5)


@pytest.fixture
def sims() -> Iterator[list[Simulator]]:
    started: list[Simulator] = []
    try:
        yield started
    finally:
        for s in started:
            s.stop()


def online(service: DeviceService, device_id: str) -> Callable[[], Snapshot | None]:
    def check() -> Snapshot | None:
        snap = service.snapshot(device_id)
        return snap if snap is not None and snap.online else None

    return check


def test_tcp_poll_publishes_decoded_snapshot(svc: DeviceService, sims: list[Simulator]) -> None:
    sim = Simulator("sma", clock=fixed()).start()
    sims.append(sim)
    events: list[DeviceEvent] = []
    svc.bus.on_event(events.append)
    svc.add({"id": "sma1", "profile": "sma", "host": "127.0.0.1", "port": sim.port, "interval": 1})
    snap = wait_for(online(svc, "sma1"))
    assert snap.points["inverter.power_w"].value == 4800
    assert snap.points["grid.frequency_hz"].value == 50
    assert snap.points["battery.soc_pct"].quality is Quality.OK
    assert [e.kind for e in events if e.kind == "online"] == ["online"]
    assert svc.health("sma1")["online"] is True


def test_sunspec_device_is_walked_then_read(svc: DeviceService, sims: list[Simulator]) -> None:
    sim = Simulator("sunspec", clock=fixed()).start()
    sims.append(sim)
    svc.add({"id": "ss", "profile": "sunspec", "host": "127.0.0.1", "port": sim.port, "interval": 1})
    snap = wait_for(online(svc, "ss"))
    assert snap.points["grid.power_w"].value == -1500
    assert snap.points["battery.power_w"].value == -2500


def test_rtu_over_pty(svc: DeviceService, sims: list[Simulator]) -> None:
    sim = Simulator("eastron_sdm630", rtu=True, clock=fixed()).start()
    sims.append(sim)
    svc.add({"id": "meter", "profile": "eastron_sdm630", "device": sim.device, "baudrate": 115200, "interval": 1})
    snap = wait_for(online(svc, "meter"))
    assert snap.points["grid.power_w"].value == pytest.approx(-1500)
    assert snap.points["grid.import_wh"].value == pytest.approx(4_321_000)


@pytest.mark.parametrize("fault", ["down", "silent", "garbage", "exception=4", "drop"])
def test_fault_goes_offline_stale_then_recovers(svc: DeviceService, sims: list[Simulator], fault: str) -> None:
    from modbus_slave.faults import parse_fault

    sim = Simulator("sma", clock=fixed()).start()
    sims.append(sim)
    events: list[str] = []
    svc.bus.on_event(lambda e: events.append(e.kind))
    svc.add({"id": "d", "profile": "sma", "host": "127.0.0.1", "port": sim.port, "interval": 1})
    wait_for(online(svc, "d"))
    sim.set_fault(parse_fault(fault))
    snap = wait_for(lambda: (s := svc.snapshot("d")) is not None and not s.online and s)
    assert snap.error
    assert all(p.quality is Quality.STALE for p in snap.points.values())
    assert snap.points["inverter.power_w"].value == 4800  # the last good value, marked stale
    sim.set_fault(None)
    back = time.monotonic()
    wait_for(online(svc, "d"), timeout=15)
    assert time.monotonic() - back < 15
    assert events.count("offline") == 1 and events.count("recovered") == 1


def test_restarted_device_is_read_again(svc: DeviceService, sims: list[Simulator]) -> None:
    sim = Simulator("sma", clock=fixed()).start()
    port = sim.port
    svc.add({"id": "d", "profile": "sma", "host": "127.0.0.1", "port": port, "interval": 1})
    wait_for(online(svc, "d"))
    sim.stop()
    wait_for(lambda: (s := svc.snapshot("d")) is not None and not s.online)
    sims.append(Simulator("sma", port=port, clock=fixed()).start())
    wait_for(online(svc, "d"), timeout=15)


def test_failing_device_does_not_slow_others(svc: DeviceService, sims: list[Simulator]) -> None:
    good = Simulator("sma", clock=fixed()).start()
    bad = Simulator("sma", clock=fixed(), fault=Fault("silent")).start()
    sims += [good, bad]
    svc.add({"id": "bad", "profile": "sma", "host": "127.0.0.1", "port": bad.port, "interval": 1})
    svc.add({"id": "good", "profile": "sma", "host": "127.0.0.1", "port": good.port, "interval": 1})
    wait_for(online(svc, "good"))
    start = svc.health("good")["polls"]
    time.sleep(3.2)
    assert svc.health("good")["polls"] - start >= 3
    assert svc.health("bad")["online"] is False


def test_device_list_survives_restart_and_polls_at_boot(tmp_path: Path, sims: list[Simulator]) -> None:
    sim = Simulator("solaredge", clock=fixed()).start()
    sims.append(sim)
    from server.config import load as load_config
    from server.devices import attach
    from server.gateway import Gateway

    store = DeviceStore(tmp_path / "devices.sqlite")
    engine = Engine()
    DeviceService(engine, Bus(), store).add(
        {"id": "se", "profile": "solaredge", "host": "127.0.0.1", "port": sim.port, "interval": 1}
    )
    engine.run_pending()
    assert engine.pool.join_idle(5)
    store.close()

    gateway = Gateway(load_config(env={"OHM_DATA_DIR": str(tmp_path), "OHM_STATS_INTERVAL": "0"}), services=[attach])
    gateway.start()
    gateway.engine.start_thread()
    try:
        snap = wait_for(online(gateway.services["devices"], "se"))
        assert snap.points["grid.export_wh"].value == 2_468_000
    finally:
        gateway.stop()
        gateway.engine.wait_stopped(5)


def test_raw_read_and_validated_write(svc: DeviceService, sims: list[Simulator]) -> None:
    sim = Simulator("sma", clock=fixed()).start()
    sims.append(sim)
    svc.add({"id": "d", "profile": "sma", "host": "127.0.0.1", "port": sim.port, "interval": 5})
    results: list[Outcome] = []
    svc.read_raw("d", 4, 30775, 2, results.append, type="int32")
    wait_for(lambda: results)
    assert results[0].unwrap()["value"] == 4800
    svc.write_raw("d", 40915, 3000, results.append)
    wait_for(lambda: len(results) == 2)
    assert results[1].ok and sim.written == {40915: 0, 40916: 3000}
    with pytest.raises(WriteRejected, match="not writable on sma"):
        svc.write_raw("d", 30775, 1)
    with pytest.raises(WriteRejected, match="outside"):
        svc.write_raw("d", 40915, 200_000)
    with pytest.raises(WriteRejected, match="needs function code 16"):
        svc.write_raw("d", 40915, 100, fc=6)


def test_bad_device_configs_are_refused(svc: DeviceService) -> None:
    with pytest.raises(DeviceConfigError, match="no profile 'nope'"):
        svc.add({"id": "x", "profile": "nope", "host": "127.0.0.1"})
    with pytest.raises(DeviceConfigError, match="host: required"):
        svc.add({"id": "x", "profile": "sma"})
    with pytest.raises(DeviceConfigError, match="interval"):
        svc.add({"id": "x", "profile": "sma", "host": "127.0.0.1", "interval": 0.1})
    with pytest.raises(DeviceConfigError, match="unknown device field 'colour'"):
        svc.add({"id": "x", "profile": "sma", "host": "127.0.0.1", "colour": "red"})


def test_solarman_v5_logger(svc: DeviceService, sims: list[Simulator]) -> None:
    from modbus_slave.solarman import SolarmanLogger

    sim = Simulator("deye", clock=fixed()).start()
    sims.append(sim)
    logger = SolarmanLogger(sim, serial=2712345678).start()
    try:
        svc.add(
            {"id": "deye", "profile": "deye", "host": "127.0.0.1", "port": logger.port, "logger_serial": 2712345678}
        )
        snap = wait_for(online(svc, "deye"))
        assert snap.points["grid.power_w"].value == -1500
        assert snap.points["pv.energy_wh"].value == 12_345_000
        assert snap.points["inverter.temperature_c"].value == 50
        # a stick ignores frames for another serial number: the device stays offline
        svc.add({"id": "wrong", "profile": "deye", "host": "127.0.0.1", "port": logger.port, "logger_serial": 1})
        wait_for(lambda: svc.health("wrong")["state"] == "offline")
        results: list[Outcome] = []
        svc.write_raw("deye", 143, 500, results.append)
        wait_for(lambda: results)
        assert results[0].ok and sim.written == {143: 500}
    finally:
        logger.stop()


def test_two_units_share_one_endpoint_and_lane(svc: DeviceService, sims: list[Simulator]) -> None:
    sim = Simulator("sma", unit_ids=(3, 4), clock=fixed()).start()
    sims.append(sim)
    svc.add({"id": "a", "profile": "sma", "host": "127.0.0.1", "port": sim.port, "unit_id": 3, "interval": 1})
    svc.add({"id": "b", "profile": "sma", "host": "127.0.0.1", "port": sim.port, "unit_id": 4, "interval": 1})
    wait_for(online(svc, "a"))
    wait_for(online(svc, "b"))
    assert len(svc._endpoints) == 1
    time.sleep(1.5)
    assert svc.health("a")["failures"] == 0 and svc.health("b")["failures"] == 0


def test_change_and_remove_are_persisted(tmp_path: Path, sims: list[Simulator]) -> None:
    sim = Simulator("sma", clock=fixed()).start()
    sims.append(sim)
    engine = Engine()
    store = DeviceStore(tmp_path / "devices.sqlite")
    service = DeviceService(engine, Bus(), store)
    engine.start_thread()
    try:
        done: list[Outcome] = []
        service.add({"id": "a", "profile": "sma", "host": "127.0.0.1", "port": sim.port}, done.append)
        service.add({"id": "b", "profile": "sma", "host": "127.0.0.1", "port": sim.port}, done.append)
        service.change("a", {"interval": 30, "name": "roof"}, done.append)
        service.remove("b", done.append)
        wait_for(lambda: len(done) == 4)
        assert all(o.ok for o in done)
        with pytest.raises(DeviceConfigError, match="cannot be changed"):
            service.change("a", {"id": "z"})
        with pytest.raises(KeyError):
            service.remove("b")
    finally:
        service.close()
        engine.stop()
        engine.wait_stopped(5)
    stored = DeviceStore(tmp_path / "devices.sqlite").load()
    assert [(c.id, c.interval, c.name) for c in stored] == [("a", 30, "roof")]


@pytest.mark.parametrize("fault", ["silent", "garbage"])
def test_rtu_fault_then_recovery(svc: DeviceService, sims: list[Simulator], fault: str) -> None:
    from modbus_slave.faults import parse_fault

    sim = Simulator("eastron_sdm630", rtu=True, clock=fixed()).start()
    sims.append(sim)
    events: list[str] = []
    svc.bus.on_event(lambda e: events.append(e.kind))
    svc.add({"id": "m", "profile": "eastron_sdm630", "device": sim.device, "baudrate": 115200, "interval": 1})
    wait_for(online(svc, "m"))
    sim.set_fault(parse_fault(fault))
    wait_for(lambda: (s := svc.snapshot("m")) is not None and not s.online)
    sim.set_fault(None)
    snap = wait_for(online(svc, "m"), timeout=15)
    assert snap.points["grid.power_w"].value == pytest.approx(-1500)
    assert events.count("offline") == 1 and events.count("recovered") == 1


@pytest.mark.parametrize("profile", profile_names())
def test_every_profile_end_to_end_over_tcp(svc: DeviceService, sims: list[Simulator], profile: str) -> None:
    """The simulator serves each profile and the poller reads it back to the same noon values."""
    sim = Simulator(profile, clock=fixed()).start()
    sims.append(sim)
    svc.add(
        {"id": "x", "profile": profile, "transport": "tcp", "host": "127.0.0.1", "port": sim.port, "logger_serial": 1}
    )
    snap = wait_for(online(svc, "x"))
    assert snap.points and all(p.quality is Quality.OK for p in snap.points.values()), snap.points
    if "inverter.power_w" in snap.points:
        assert snap.points["inverter.power_w"].value == pytest.approx(4800)
    if "grid.power_w" in snap.points:
        assert snap.points["grid.power_w"].value == pytest.approx(-1500)


def test_saves_land_in_the_order_they_were_asked_for(tmp_path: Path) -> None:
    engine = Engine(workers=4)
    store = DeviceStore(tmp_path / "devices.sqlite")
    service = DeviceService(engine, Bus(), store)
    engine.start_thread()
    try:
        done: list[Outcome] = []
        service.add({"id": "a", "profile": "sma", "host": "127.0.0.1", "port": 1, "enabled": False}, done.append)
        for interval in range(2, 152):  # with four workers and no ordering, an older save could land last
            service.change("a", {"interval": interval}, done.append)
        wait_for(lambda: len(done) == 151)
        assert all(o.ok for o in done)
    finally:
        service.close()
        engine.stop()
        engine.wait_stopped(5)
    assert [c.interval for c in DeviceStore(tmp_path / "devices.sqlite").load()] == [151]
