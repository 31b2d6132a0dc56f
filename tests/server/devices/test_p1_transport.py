"""P1 meters end to end: the simulator streams over TCP and a pty, the devices service publishes Snapshots."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from modbus_slave.p1 import P1Simulator, dsmr5_telegram
from server.bus import Quality
from server.devices.service import DeviceService, WriteRejected
from server.devices.store import DeviceConfigError
from tests.server.devices.meter_support import offline, online
from tests.support import wait_for

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "dsmr"
V5 = (FIXTURES / "v5.txt").read_bytes()
V22 = (FIXTURES / "v2_2.txt").read_bytes()


def bridge(device_id: str, port: int) -> dict[str, Any]:
    """A DSMR meter behind a P1-to-TCP bridge on 127.0.0.1, polled every second."""
    return {"id": device_id, "profile": "dsmr", "transport": "p1_tcp", "host": "127.0.0.1", "port": port, "interval": 1}


def test_p1_tcp_bridge_to_snapshot(svc: DeviceService, stop_later: list[Any]) -> None:
    sim = P1Simulator([V5], period=0.2).serve_tcp().start()
    stop_later.append(sim)
    svc.add(bridge("p1", sim.port))
    snap = wait_for(online(svc, "p1"))
    assert snap.profile == "dsmr"
    assert snap.points["grid.power_w"].value == 111.0
    assert snap.points["grid.power_w"].unit == "W"
    assert snap.points["grid.import_wh"].value == 2_375_582.0
    assert snap.points["gas.volume_m3"].value == 246.138
    assert snap.points["grid.voltage_l3_v"].quality is Quality.OK


def test_p1_serial_cable_on_a_pty_dsmr22_7e1(svc: DeviceService, stop_later: list[Any]) -> None:
    sim = P1Simulator([V22], period=0.2).open_pty().start()
    stop_later.append(sim)
    cfg = {"id": "old", "profile": "dsmr", "transport": "p1_serial", "device": sim.device}
    svc.add({**cfg, "parity": "E", "interval": 1})  # 7E1: DSMR 2.2/3.0, so 9600 baud without saying so
    assert svc._pollers["old"].endpoint.link.baudrate == 9600
    snap = wait_for(online(svc, "old"))
    assert snap.points["grid.import_wh"].value == 2002.0
    assert snap.points["gas.volume_m3"].value == 1.001


def test_live_telegrams_follow_the_meter(svc: DeviceService, stop_later: list[Any]) -> None:
    state = {"w": 1500.0}
    sim = P1Simulator(lambda: dsmr5_telegram(1.7e9, 1e6, 2e5, state["w"], 42.0), period=0.1).serve_tcp().start()
    stop_later.append(sim)
    svc.add(bridge("live", sim.port))
    wait_for(lambda: (s := svc.snapshot("live")) and s.online and s.points["grid.power_w"].value == 1500.0)
    state["w"] = -2400.0  # the house starts exporting: the sign flips, export per phase shows up
    snap = wait_for(lambda: (s := svc.snapshot("live")) and s.points["grid.power_w"].value == -2400.0 and s)
    assert snap.points["grid.power_l1_w"].value == -800.0
    assert snap.points["grid.export_wh"].value == 2e5


def test_corrupt_telegrams_are_rejected_counted_and_logged_once(
    svc: DeviceService, stop_later: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ohm.devices.p1")
    sim = P1Simulator([V5], period=0.05, fault="corrupt").serve_tcp().start()
    stop_later.append(sim)
    svc.add(bridge("bad", sim.port))
    snap = wait_for(offline(svc, "bad"))
    assert "no valid telegram" in (snap.error or "")
    wait_for(lambda: svc.health("bad").get("rejected_telegrams", 0) >= 3)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "rejected" in r.getMessage()]
    assert len(warnings) == 1 and "CRC mismatch" in warnings[0].getMessage()
    sim.fault = None  # the cable is fixed: the meter comes back within the backoff cap
    snap = wait_for(online(svc, "bad"))
    assert snap.points["grid.power_w"].value == 111.0


def test_truncated_telegrams_are_skipped_between_good_ones(svc: DeviceService, stop_later: list[Any]) -> None:
    sim = P1Simulator([V5], period=0.05, fault="truncate", every=2).serve_tcp().start()
    stop_later.append(sim)
    svc.add(bridge("cut", sim.port))
    snap = wait_for(online(svc, "cut"))
    assert snap.points["grid.power_w"].value == 111.0
    wait_for(lambda: svc.health("cut").get("rejected_telegrams", 0) >= 1)


def test_silent_meter_goes_offline_then_recovers(svc: DeviceService, stop_later: list[Any]) -> None:
    sim = P1Simulator([V5], period=0.1).serve_tcp().start()
    stop_later.append(sim)
    svc.add(bridge("q", sim.port))
    wait_for(online(svc, "q"))
    sim.fault = "silence"
    snap = wait_for(offline(svc, "q"), timeout=15)
    assert snap.points["grid.power_w"].quality is Quality.STALE
    sim.fault = None
    wait_for(online(svc, "q"), timeout=15)


def test_bridge_that_drops_the_connection_is_reconnected(svc: DeviceService, stop_later: list[Any]) -> None:
    sim = P1Simulator([V5], period=0.1).serve_tcp().start()
    stop_later.append(sim)
    svc.add(bridge("r", sim.port))
    wait_for(online(svc, "r"))
    polls = svc.health("r")["polls"]
    sim.drop_clients()
    wait_for(lambda: svc.health("r")["polls"] >= polls + 3 and svc.health("r")["online"], timeout=15)


def test_meter_configs_are_checked(svc: DeviceService) -> None:
    with pytest.raises(DeviceConfigError, match="host"):
        svc.add({"id": "a", "profile": "dsmr", "transport": "p1_tcp"})
    with pytest.raises(DeviceConfigError, match="device"):
        svc.add({"id": "a", "profile": "dsmr"})  # the default transport is the serial cable
    with pytest.raises(DeviceConfigError, match="dsmr devices use p1_serial, p1_tcp"):
        svc.add({"id": "a", "profile": "dsmr", "transport": "tcp", "host": "127.0.0.1"})
    with pytest.raises(DeviceConfigError, match="needs a meter profile"):
        svc.add({"id": "a", "profile": "sma", "transport": "p1_tcp", "host": "127.0.0.1"})
    with pytest.raises(DeviceConfigError, match="only Envoy"):
        svc.add({"id": "a", "profile": "dsmr", "transport": "p1_tcp", "host": "127.0.0.1", "token": "x"})


def test_raw_modbus_access_to_a_meter_is_refused(svc: DeviceService, stop_later: list[Any]) -> None:
    sim = P1Simulator([V5], period=0.2).serve_tcp().start()
    stop_later.append(sim)
    svc.add({"id": "m", "profile": "dsmr", "transport": "p1_tcp", "host": "127.0.0.1", "port": sim.port})
    with pytest.raises(WriteRejected, match="meter without Modbus registers"):
        svc.read_raw("m", 3, 0, 1)
    with pytest.raises(WriteRejected, match="meter without Modbus registers"):
        svc.write_raw("m", 0, 1)
