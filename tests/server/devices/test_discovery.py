"""Discovery against simulators on loopback only."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from modbus_slave.server import Simulator
from server.devices.discovery import Scan, expand_hosts
from server.engine import Engine

NOON = 1_699_963_200.0


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = Engine(workers=2)
    eng.start_thread()
    try:
        yield eng
    finally:
        eng.stop()
        eng.wait_stopped(5)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_expand_hosts() -> None:
    assert expand_hosts("127.0.0.1-3") == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert expand_hosts("127.0.0.0/30") == ["127.0.0.1", "127.0.0.2"]
    with pytest.raises(ValueError, match="bad host range"):
        expand_hosts("not-an-ip")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("profile", "expect"),
    [("sma", "sma"), ("solaredge", "solaredge"), ("sunspec", "sunspec"), ("huawei_sun2000", "huawei_sun2000")],
)
def test_tcp_scan_suggests_profile(engine: Engine, profile: str, expect: str) -> None:
    sim = Simulator(profile, clock=lambda: NOON).start()
    progress: list[int] = []
    try:
        ports = [closed_port(), sim.port]
        scan = Scan.tcp(
            engine, "127.0.0.1", ports=ports, units=(1, 3), timeout=0.3, on_progress=lambda s: progress.append(s.done)
        )
        scan.start()
        assert scan.finished.wait(20)
    finally:
        sim.stop()
    assert progress == [1, 2]
    assert len(scan.found) == 1
    found = scan.found[0]
    assert found.port == sim.port and found.profile == expect, found
    assert found.sunspec == (profile in ("solaredge", "sunspec"))


@pytest.mark.integration
def test_rtu_scan_finds_unit_and_baud(engine: Engine) -> None:
    sim = Simulator("eastron_sdm630", rtu=True, clock=lambda: NOON).start()
    try:
        scan = Scan.serial(engine, [sim.device], bauds=[9600], units=[1, 2]).start()
        assert scan.finished.wait(20)
    finally:
        sim.stop()
    assert [(f.unit_id, f.profile) for f in scan.found] == [(1, "eastron_sdm630")]


@pytest.mark.integration
def test_scan_is_rate_limited_and_cancellable(engine: Engine) -> None:
    ports = [closed_port() for _ in range(50)]
    scan = Scan.tcp(engine, "127.0.0.1", ports=ports, rate=10)
    t0 = time.monotonic()
    scan.start()
    time.sleep(0.35)
    scan.cancel()
    assert scan.finished.wait(5)
    assert scan.cancelled and 2 <= scan.done <= 6, scan.done
    assert time.monotonic() - t0 < 2


@pytest.mark.integration
def test_service_scan_api(engine: Engine) -> None:
    from server.bus import Bus
    from server.devices.discovery import serial_ports
    from server.devices.service import DeviceService

    assert isinstance(serial_ports(), list)
    service = DeviceService(engine, Bus())
    sim = Simulator("sma", clock=lambda: NOON).start()
    try:
        scan_id = service.scan(hosts="127.0.0.1", ports=[sim.port], units=[3], timeout=0.3)
        deadline = time.monotonic() + 10
        while not service.scan_status(scan_id)["finished"] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sim.stop()
    status = service.scan_status(scan_id)
    assert status["done"] == 1 and status["found"][0]["profile"] == "sma"
    with pytest.raises(ValueError, match="give hosts"):
        service.scan()


def test_only_the_latest_finished_scans_are_kept(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from server.bus import Bus
    from server.devices.service import KEEP_SCANS, DeviceService
    from server.engine import Engine

    engine = Engine()
    service = DeviceService(engine, Bus())
    engine.start_thread()
    try:
        ids = []
        for _ in range(KEEP_SCANS + 5):
            ids.append(service.scan(hosts="127.0.0.1", ports=[1], timeout=0.2))
            service._scans[ids[-1]].finished.wait(5)
        with pytest.raises(KeyError):
            service.scan_status(ids[0])
        assert service.scan_status(ids[-1])["finished"]
        assert len(service._scans) <= KEEP_SCANS + 1
    finally:
        service.close()
        engine.stop()
        engine.wait_stopped(5)
