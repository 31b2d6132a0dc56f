"""mDNS discovery on loopback only: a test advertiser on 127.0.0.1, zeroconf bound to 127.0.0.1."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.devices import mdns
from server.devices.commands import CommandFailed, parse_scan
from server.devices.service import DeviceService
from tests.server.devices.meter_support import running_service
from tests.support import api_settings, started_gateway, wait_for

LOOPBACK = ["127.0.0.1"]


@pytest.fixture
def advertiser() -> Iterator[Any]:
    """Announce services on 127.0.0.1 only; `add(type, name, port, props)`; all withdrawn at the end."""
    from zeroconf import IPVersion, ServiceInfo, Zeroconf

    zc = Zeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
    infos: list[Any] = []
    tag = uuid.uuid4().hex[:6]  # other tests may announce on loopback too: names stay ours

    def add(service_type: str, name: str, port: int, props: dict[str, str]) -> str:
        full = f"{name}-{tag}.{service_type}"
        info = ServiceInfo(
            service_type,
            full,
            addresses=[socket.inet_aton("127.0.0.1")],
            port=port,
            properties=props,
            server=f"{name}-{tag}.local.",
        )
        zc.register_service(info)
        infos.append(info)
        return f"{name}-{tag}"

    try:
        yield add
    finally:
        for info in infos:
            zc.unregister_service(info)
        zc.close()


def test_announcements_become_findings_with_profiles_and_hints() -> None:
    hw = mdns.to_found(
        "_hwenergy._tcp.local.",
        "p1meter-1._hwenergy._tcp.local.",
        "127.0.0.1",
        80,
        {b"product_type": b"HWE-P1", b"serial": b"3c39e7aabbcc", b"api_enabled": b"1"},
    )
    assert (hw.transport, hw.profile, hw.score, hw.serial, hw.name) == (
        "homewizard",
        "homewizard_p1",
        1.0,
        "3c39e7aabbcc",
        "p1meter-1",
    )
    off = mdns.to_found("_hwenergy._tcp.local.", "x._hwenergy._tcp.local.", "127.0.0.1", 80, {b"api_enabled": b"0"})
    assert "switch it on" in off.note
    socket_ = mdns.to_found(
        "_hwenergy._tcp.local.", "s._hwenergy._tcp.local.", "127.0.0.1", 80, {b"product_type": b"HWE-SKT"}
    )
    assert socket_.profile is None and "not a P1 meter" in socket_.note
    envoy = mdns.to_found(
        "_enphase-envoy._tcp.local.",
        "envoy._enphase-envoy._tcp.local.",
        "127.0.0.1",
        80,
        {b"serialnum": b"122233334444", b"protovers": b"7.6.175"},
    )
    assert envoy.profile == "envoy" and envoy.serial == "122233334444" and "token" in envoy.note
    gw = mdns.to_found("_ohm._tcp.local.", "Ohm-1._ohm._tcp.local.", "127.0.0.1", 8080, {})
    assert gw.transport == "ohm" and gw.profile is None


@pytest.mark.integration
def test_browse_on_loopback_finds_homewizard_envoy_and_gateways(advertiser: Any) -> None:
    hw = advertiser("_hwenergy._tcp.local.", "p1meter", 8123, {"product_type": "HWE-P1", "serial": "abc"})
    envoy = advertiser("_enphase-envoy._tcp.local.", "envoy", 8124, {"serialnum": "1222", "protovers": "5.0.62"})
    gw = advertiser("_ohm._tcp.local.", "Ohm-test", 8125, {"id": "x"})
    found: dict[str, Any] = {}
    for _ in range(3):  # a loaded machine may answer late: browse again rather than listen longer every time
        found.update({f.name: f for f in mdns.browse(2.0, LOOPBACK)})
        if {hw, envoy, gw} <= set(found):
            break
    assert found[hw].profile == "homewizard_p1" and (found[hw].host, found[hw].port) == ("127.0.0.1", 8123)
    assert found[envoy].profile == "envoy" and found[envoy].note == ""  # firmware 5: no token needed
    assert found[gw].transport == "ohm" and found[gw].source == "mdns"


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[DeviceService]:
    for service in running_service(tmp_path):
        service.mdns_interfaces, service.mdns_wait = LOOPBACK, 3.0  # zeroconf answers within ~1-2 s
        yield service


@pytest.mark.integration
def test_scan_merges_mdns_with_a_modbus_scan(svc: DeviceService, advertiser: Any) -> None:
    name = advertiser("_hwenergy._tcp.local.", "p1meter", 8123, {"product_type": "HWE-P1"})
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: the Modbus probe finds nothing there
    try:
        scan_id = svc.scan(hosts="127.0.0.1", ports=[closed.getsockname()[1]], mdns=True, timeout=0.2)
        status = wait_for(lambda: (s := svc.scan_status(scan_id))["finished"] and s)
    finally:
        closed.close()
    assert status["total"] == 2 and status["done"] == 2  # one browse + one Modbus probe
    mine = [f for f in status["found"] if f["name"] == name]
    assert mine and mine[0]["profile"] == "homewizard_p1" and mine[0]["source"] == "mdns"


@pytest.mark.integration
def test_mdns_alone_is_a_scan(svc: DeviceService, advertiser: Any) -> None:
    name = advertiser("_enphase-envoy._tcp.local.", "envoy", 80, {"serialnum": "9"})
    scan_id = svc.scan(**parse_scan({"mdns": True}))
    status = wait_for(lambda: (s := svc.scan_status(scan_id))["finished"] and s)
    assert any(f["name"] == name and f["profile"] == "envoy" for f in status["found"])


def test_scan_arguments_accept_mdns() -> None:
    assert parse_scan({"mdns": True}) == {"mdns": True}
    assert parse_scan({"mdns": True, "hosts": "127.0.0.1"})["hosts"] == "127.0.0.1"
    with pytest.raises(CommandFailed, match="true or false"):
        parse_scan({"mdns": "yes"})
    with pytest.raises(CommandFailed, match="give either hosts"):
        parse_scan({"mdns": False})


@pytest.mark.integration
def test_api_scan_with_mdns_browses_where_the_api_listens(tmp_path: Path, advertiser: Any) -> None:
    from server.api import attach as api
    from server.api.tokens import load_or_create
    from server.devices import attach as devices
    from tests.server.api.conftest import Client

    name = advertiser("_hwenergy._tcp.local.", "p1meter", 8123, {"product_type": "HWE-P1"})
    settings = api_settings(tmp_path / "gw")
    with started_gateway(settings, [devices, api]) as gw:
        assert gw.services["devices"].mdns_interfaces == LOOPBACK  # the API's address, not every interface
        admin = Client(settings["api.port"], load_or_create(gw.data_dir)[0].admin)
        try:
            assert admin.call("POST", "/api/scan", {"mdns": "yes"}).status == 422
            got = admin.call("POST", "/api/scan", {"mdns": True})
            assert got.status == 202, got.json
            scan_id = got.json["scan_id"]
            done = wait_for(lambda: (s := admin.call("GET", f"/api/scan/{scan_id}").json)["finished"] and s, timeout=15)
            assert any(f["name"] == name and f["profile"] == "homewizard_p1" for f in done["found"]), done
        finally:
            admin.close()


@pytest.mark.integration
def test_cli_scan_with_mdns_on_loopback(advertiser: Any) -> None:
    import subprocess
    import sys

    name = advertiser("_enphase-envoy._tcp.local.", "envoy", 443, {"serialnum": "77", "protovers": "8.2.4"})
    args = ["scan", "--mdns", "--mdns-interface", "127.0.0.1", "--mdns-wait", "3"]
    out = subprocess.run([sys.executable, "-m", "server", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if name in x)
    assert "127.0.0.1:443" in line and "profile envoy" in line and "token" in line
