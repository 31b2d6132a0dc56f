"""Outbox at its bound and a disk that fills up: the oldest telemetry is dropped and counted, the newest
kept, the gateway keeps running, and the API reports it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.api import attach as api
from server.bus import DeviceEvent
from server.crypto.service import attach as identity
from server.gateway import Gateway
from server.outbox.service import attach as outbox
from server.telemetry.service import attach as telemetry
from server.uplink.service import attach as uplink
from tests.support import api_settings, gateway_pool, wait_for

from .conftest import Feeder, report
from .gateways import http

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway_with_api(tmp_path: Path) -> Iterator[Any]:
    def make(data: Path, **settings: Any) -> tuple[Gateway, int, str, list[DeviceEvent]]:
        dotted = {k.replace("__", "."): v for k, v in settings.items()}
        overrides = api_settings(data, **{"telemetry.batch_interval": 0.1, **dotted})
        port = overrides["api.port"]
        events: list[DeviceEvent] = []
        gw = start(
            overrides, [identity, outbox, telemetry, uplink, api], prepare=lambda g: g.bus.on_event(events.append)
        )
        import json

        token = json.loads((data / "api_tokens.json").read_text())["read"]
        return gw, port, token, events

    with gateway_pool() as start:
        yield make


def test_outbox_at_its_bound_drops_oldest_counts_and_reports(gateway_with_api, tmp_path):
    gw, port, token, events = gateway_with_api(tmp_path / "gw", outbox__max_bytes=64 * 1024)
    feeder = Feeder(gw, rate=300).start()
    try:
        wait_for(lambda: gw.services["outbox"].store.dropped > 20, 20, why=lambda: str(gw.services["outbox"].stats()))
    finally:
        sent = feeder.stop()
    ob, tele = gw.services["outbox"], gw.services["telemetry"]
    wait_for(lambda: tele.pending() == 0, 5)
    assert ob.store.bytes <= 64 * 1024
    wait_for(lambda: any(e.kind == "outbox_dropped" for e in events), 5)  # signed onto /events too
    status, state = http(port, "GET", "/api/state", token)
    assert status == 200 and state["outbox"]["dropped"] == ob.store.dropped > 0
    metrics = http(port, "GET", "/metrics", token)
    assert metrics[0] == 200
    assert gw.engine.state == "running"
    # The newest batch is still there: drops take the oldest first.
    newest = ob.store.take(1000)[-1]
    assert newest.id == max(r.id for r in ob.store.take(1000))
    report("outbox_bound", readings=sent, max_bytes=64 * 1024, dropped=ob.store.dropped, kept_rows=ob.store.rows)


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)], check=False)
    return r.returncode == 0


def test_disk_nearly_full_drops_oldest_and_keeps_running(gateway_with_api, tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "4m"):
        pytest.skip("needs root to mount a small tmpfs as a nearly full disk")
    try:
        data = disk / "gw"
        data.mkdir()
        gw, port, token, events = gateway_with_api(data)  # the byte bound (256 MB) is far away
        filler = disk / "filler"
        st = os.statvfs(disk)
        with filler.open("wb") as f:  # leave ~400 kB: the outbox runs into the disk, not its bound
            f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - 400 * 1024))
        ob, tele = gw.services["outbox"], gw.services["telemetry"]
        feeder = Feeder(gw, rate=400).start()
        try:
            wait_for(lambda: ob.store.disk_cap is not None and ob.store.dropped > 0, 30, why=lambda: str(ob.stats()))
            batches = tele.batches
            wait_for(lambda: tele.batches > batches + 10, 10)  # still signing and storing after the disk filled
        finally:
            sent = feeder.stop()
        wait_for(lambda: tele.pending() == 0, 10, why=lambda: str(tele.stats()))
        assert gw.engine.state == "running"
        status, state = http(port, "GET", "/api/state", token)
        assert status == 200 and state["outbox"]["disk_cap"] and state["outbox"]["dropped"] > 0
        assert ob.store.disk_full == 0  # held below the disk's end: SQLite never had to refuse a write
        wait_for(lambda: any(e.kind == "outbox_dropped" for e in events), 5)
        report(
            "disk_full",
            readings=sent,
            disk_full_events=ob.store.disk_full,
            disk_cap_bytes=ob.store.disk_cap,
            dropped=ob.store.dropped,
            kept_rows=ob.store.rows,
            lost_in_memory=tele.lost,
        )
        gw.stop()
        gw.engine.wait_stopped(5)
    finally:
        time.sleep(0.1)
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-l", str(disk)], check=False)
