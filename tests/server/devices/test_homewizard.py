"""HomeWizard P1 (local API v1) end to end against the simulator on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest

from modbus_slave.homewizard import HWE_P1_DATA, HomeWizardSimulator
from server.devices.http_meters import HomeWizardClient
from server.devices.meters import decode, load_meter_profile
from server.devices.service import DeviceService
from server.devices.transport import DeviceIOError, Link
from tests.server.devices.meter_support import offline, online
from tests.support import wait_for


def test_documented_reply_decodes_to_canonical_points() -> None:
    points = decode(load_meter_profile("homewizard_p1"), HWE_P1_DATA)
    values = {k: p.value for k, p in points.items()}
    assert values["grid.power_w"] == -543  # HomeWizard already signs export negative
    assert values["grid.import_wh"] == pytest.approx(13_779_338)
    assert values["grid.export_t2_wh"] == pytest.approx(234_111)
    assert values["grid.voltage_l2_v"] == 230.222
    assert values["gas.volume_m3"] == 111.222  # the `external` list wins over the older total_gas_m3
    assert values["water.volume_m3"] == 222.333
    assert values["water.read_ts"] == 1674680997.0  # 230125220957, Dutch winter time = 21:09:57 UTC
    assert points["grid.power_w"].unit == "W" and points["gas.volume_m3"].unit == "m3"


def test_older_firmware_gas_fields_are_used_without_external() -> None:
    data = {k: v for k, v in HWE_P1_DATA.items() if k != "external"}
    values = {k: p.value for k, p in decode(load_meter_profile("homewizard_p1"), data).items()}
    assert values["gas.volume_m3"] == 1122.333
    assert "water.volume_m3" not in values


@pytest.mark.integration
def test_homewizard_to_snapshot(svc: DeviceService, stop_later: list[Any]) -> None:
    sim = HomeWizardSimulator().start()
    stop_later.append(sim)
    svc.add({"id": "hw", "profile": "homewizard_p1", "host": "127.0.0.1", "port": sim.port, "interval": 1})
    snap = wait_for(online(svc, "hw"))
    assert snap.points["grid.power_w"].value == -543
    assert snap.points["grid.import_wh"].value == pytest.approx(13_779_338)
    assert [p for p, _ in sim.requests[:2]] == ["/api", "/api/v1/data"]
    sim.data = {**sim.data, "active_power_w": 1200}
    wait_for(lambda: (s := svc.snapshot("hw")) and s.points["grid.power_w"].value == 1200)


@pytest.mark.integration
@pytest.mark.parametrize(("fault", "why"), [("error", "HTTP 500"), ("denied", "HTTP 401"), ("garbage", "not JSON")])
def test_faults_take_the_meter_offline_with_a_reason_then_it_recovers(
    svc: DeviceService, stop_later: list[Any], fault: str, why: str
) -> None:
    sim = HomeWizardSimulator().start()
    stop_later.append(sim)
    svc.add({"id": "hw", "profile": "homewizard_p1", "host": "127.0.0.1", "port": sim.port, "interval": 1})
    wait_for(online(svc, "hw"))
    sim.fault = fault
    snap = wait_for(offline(svc, "hw"))
    assert why in (snap.error or "")
    sim.fault = None
    wait_for(online(svc, "hw"))


@pytest.mark.integration
def test_slow_meter_times_out(stop_later: list[Any]) -> None:
    sim = HomeWizardSimulator(fault="slow", delay=1.0).start()
    stop_later.append(sim)
    with pytest.raises(DeviceIOError, match="timed out"):
        HomeWizardClient(Link("homewizard", host="127.0.0.1", port=sim.port, timeout=0.2))


@pytest.mark.integration
def test_something_else_on_the_port_is_not_taken_for_a_homewizard(stop_later: list[Any]) -> None:
    sim = HomeWizardSimulator().start()
    sim.documents["/api"] = {"hello": "world"}
    stop_later.append(sim)
    with pytest.raises(DeviceIOError, match="not a HomeWizard"):
        HomeWizardClient(Link("homewizard", host="127.0.0.1", port=sim.port, timeout=1))
