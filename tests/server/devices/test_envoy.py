"""Enphase Envoy end to end (HTTP, and HTTPS with the owner's token) against the simulator on 127.0.0.1.

The token is a secret: stored 0600, sent only as a Bearer header to the configured Envoy, and never in
a log line, an error, a repr, the API's answers or anything published on the bus.
"""

from __future__ import annotations

import json
import logging
import ssl
import stat
from pathlib import Path
from typing import Any

import pytest

from modbus_slave.envoy import PRODUCTION_JSON, READINGS, EnvoySimulator
from server.api import attach as api
from server.api.tokens import load_or_create
from server.bus import Bus, Snapshot
from server.devices import attach as devices
from server.devices.meters import decode, load_meter_profile
from server.devices.service import DeviceService
from server.devices.store import DeviceStore
from server.engine import Engine, FakeClock
from server.uplink.pki import make_pki
from tests.server.api.conftest import Client
from tests.server.devices.meter_support import offline, online
from tests.support import api_settings, started_gateway, wait_for

TOKEN = "eyJraWQiOiJ0ZXN0In0.eyJ1c2VybmFtZSI6Im93bmVyQGV4YW1wbGUuY29tIn0.c2VjcmV0LXNpZ25hdHVyZS0xMjM0NTY3ODk"


def _tls(tmp_path: Path) -> ssl.SSLContext:
    pki = make_pki(tmp_path / "pki")  # stands in for the Envoy's self-signed certificate
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    return ctx


def test_metered_envoy_document_decodes() -> None:
    doc = {**PRODUCTION_JSON, "meters": {"production": READINGS[0], "net-consumption": READINGS[1]}}
    values = {k: p.value for k, p in decode(load_meter_profile("envoy"), doc).items()}
    assert values["pv.power_w"] == 3050.5  # the production CT, not the inverters' slower estimate
    assert values["pv.energy_wh"] == 21950042.1
    assert values["grid.power_w"] == -1840.1  # net-consumption: + import, - export
    assert values["grid.import_wh"] == 9876543.2 and values["grid.export_wh"] == 13385384.8
    assert values["grid.voltage_l1_v"] == 231.2 and values["grid.frequency_hz"] == 50.02
    assert values["x.load_power_w"] == 1210.4


def test_envoy_without_meters_falls_back_to_the_inverters() -> None:
    values = {k: p.value for k, p in decode(load_meter_profile("envoy"), PRODUCTION_JSON).items()}
    assert values["pv.power_w"] == 3012 and values["pv.energy_wh"] == 21804152
    assert values["grid.power_w"] == -1840.1  # from production.json's net-consumption
    assert "grid.import_wh" not in values


@pytest.mark.integration
def test_envoy_over_http_without_token(svc: DeviceService, stop_later: list[Any]) -> None:
    sim = EnvoySimulator(meters=False).start()
    stop_later.append(sim)
    svc.add({"id": "env", "profile": "envoy", "host": "127.0.0.1", "port": sim.port, "interval": 1})
    snap = wait_for(online(svc, "env"))
    assert snap.points["pv.power_w"].value == 3012
    assert all("authorization" not in h for _, h in sim.requests)


@pytest.mark.integration
def test_envoy_https_with_token_and_the_token_stays_secret(
    svc: DeviceService, stop_later: list[Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = EnvoySimulator(token=TOKEN).start(tls=_tls(tmp_path))
    stop_later.append(sim)
    published: list[Snapshot] = []
    svc.bus.on_snapshot(published.append)
    cfg = svc.add(
        {"id": "env", "profile": "envoy", "host": "127.0.0.1", "port": sim.port, "token": TOKEN, "interval": 1}
    )
    snap = wait_for(online(svc, "env"))
    assert snap.points["grid.power_w"].value == -1840.1 and snap.points["pv.power_w"].value == 3050.5
    assert sim.scheme == "https"
    assert {h.get("authorization") for _, h in sim.requests} == {f"Bearer {TOKEN}"}
    sim.token = "something-else"  # the owner's token expired
    snap = wait_for(offline(svc, "env"))
    assert "HTTP 401" in (snap.error or "") and "token was refused" in (snap.error or "")

    assert TOKEN not in repr(cfg) and TOKEN not in json.dumps(svc.list())
    assert svc.list()[0]["token_set"] is True
    assert TOKEN not in caplog.text
    assert not any(TOKEN in json.dumps(s.values()) or TOKEN in (s.error or "") for s in published)
    stored = tmp_path / "devices.sqlite"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert DeviceStore(stored).load()[0].token == TOKEN  # kept across restarts (the store is the secret's home)


def test_changing_other_fields_keeps_the_token_and_a_new_one_replaces_it(tmp_path: Path) -> None:
    engine = Engine(clock=FakeClock(), workers=1)  # no polling thread: only the device list is under test
    svc = DeviceService(engine, Bus(), DeviceStore(tmp_path / "devices.sqlite"))
    try:
        svc.add({"id": "env", "profile": "envoy", "host": "127.0.0.1", "token": TOKEN})
        assert svc.change("env", {"name": "roof"}).token == TOKEN
        assert svc.change("env", {"token": "new-token"}).token == "new-token"
        assert svc.list()[0]["token_set"] is True and "token" not in svc.list()[0]
    finally:
        svc.close()


@pytest.mark.integration
def test_wrong_token_is_a_clear_offline_reason(svc: DeviceService, stop_later: list[Any]) -> None:
    sim = EnvoySimulator(token=TOKEN).start()
    stop_later.append(sim)
    svc.add({"id": "env", "profile": "envoy", "host": "127.0.0.1", "port": sim.port, "interval": 1})
    snap = wait_for(offline(svc, "env"))
    assert "HTTP 401" in (snap.error or "") and "needs a token" in (snap.error or "")


@pytest.mark.integration
def test_api_never_returns_or_logs_the_token(tmp_path: Path, stop_later: list[Any]) -> None:
    sim = EnvoySimulator(token=TOKEN).start(tls=_tls(tmp_path))
    stop_later.append(sim)
    settings = api_settings(tmp_path / "gw")
    with started_gateway(settings, [devices, api]) as gw:
        admin = Client(settings["api.port"], load_or_create(gw.data_dir)[0].admin)
        try:
            body = {
                "id": "env",
                "profile": "envoy",
                "host": "127.0.0.1",
                "port": sim.port,
                "token": TOKEN,
                "interval": 1,
            }
            got = admin.call("POST", "/api/devices", body)
            assert got.status == 201, got.json
            assert got.json["device"]["token_set"] is True and "token" not in got.json["device"]
            snap = wait_for(lambda: admin.call("GET", "/api/devices/env/readings").json["snapshot"])
            wait_for(lambda: admin.call("GET", "/api/devices/env/readings").json["snapshot"]["online"])
            answers = [admin.call("GET", p).body for p in ("/api/devices", "/api/devices/env", "/api/logs?limit=500")]
            assert snap and not any(TOKEN.encode() in a for a in answers)
            got = admin.call("PATCH", "/api/devices/env", {"interval": 2})
            assert got.status == 200 and TOKEN.encode() not in got.body and got.json["device"]["token_set"] is True
            bad = admin.call("POST", "/api/devices", {**body, "id": "hw", "profile": "homewizard_p1"})
            assert bad.status == 422 and TOKEN.encode() not in bad.body
        finally:
            admin.close()


def _fingerprint(pki_dir: Path) -> str:
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = x509.load_pem_x509_certificate((pki_dir / "server.pem").read_bytes())
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


@pytest.mark.integration
def test_certificate_is_pinned_on_first_use_and_an_impostor_never_gets_the_token(
    svc: DeviceService, stop_later: list[Any], tmp_path: Path
) -> None:
    real = EnvoySimulator(token=TOKEN).start(tls=_tls(tmp_path / "real"))
    stop_later.append(real)
    port = real.port
    svc.add({"id": "env", "profile": "envoy", "host": "127.0.0.1", "port": port, "token": TOKEN, "interval": 1})
    wait_for(lambda: svc.get("env").tls_pin)
    pin = svc.get("env").tls_pin
    assert pin == _fingerprint(tmp_path / "real" / "pki")
    assert svc.list()[0]["tls_pin"] == pin  # not a secret: the owner can compare it with the gateway's
    wait_for(online(svc, "env"))

    real.stop()  # someone else answers at the Envoy's address with another self-signed certificate
    fake = EnvoySimulator().start(port=port, tls=_tls(tmp_path / "fake"))
    stop_later.append(fake)
    snap = wait_for(
        lambda: (s := svc.snapshot("env")) and "certificate changed" in (s.error or "") and s,
        why=lambda: repr(svc.health("env")),
    )
    assert not snap.online
    assert all("authorization" not in h for _, h in fake.requests)  # the token never went to the impostor

    svc.change("env", {"tls_pin": ""})  # the owner replaced the gateway: trust the new certificate
    wait_for(lambda: svc.get("env").tls_pin == _fingerprint(tmp_path / "fake" / "pki"))
    wait_for(online(svc, "env"))
