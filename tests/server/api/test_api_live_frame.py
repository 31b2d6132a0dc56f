"""The live frame builder on a fake clock: device health, ages, revisions of actions and notifications."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest

from server.api.live import FrameBuilder, device_status, token_of
from server.api.notifications import Notifications
from server.audit import AuditLog
from server.bus import DeviceEvent, Point, Quality, Snapshot
from server.config import load
from server.devices import attach as devices
from server.engine import FakeClock
from server.gateway import Gateway
from server.uplink.broker import free_port


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway on a fake clock with the real device service (nothing polled: the engine is never run)."""
    cfg = load(None, env={}, overrides={"data_dir": tmp_path, "stats_interval": 0, "name": "Roof"})
    gw = Gateway(cfg, FakeClock(), services=[devices])
    gw.start()
    try:
        yield gw
    finally:
        gw.services["devices"].close()


def publish(gw: Gateway, device: str, *, online: bool = True, error: str | None = None, **points: float) -> None:
    """Publish a snapshot read now (by the gateway's clock)."""
    clock = gw.engine.clock
    pts = {name.replace("__", "."): Point(v, "W") for name, v in points.items()}
    gw.bus.publish(Snapshot(device, clock.time(), clock.monotonic(), online, MappingProxyType(pts), "sma", error))


@pytest.mark.parametrize(
    ("enabled", "state", "has_snap", "online", "age", "want"),
    [
        (False, "online", True, True, 0.0, "disabled"),
        (True, "new", False, False, None, "waiting"),
        (True, "offline", False, False, None, "offline"),
        (True, "online", True, False, 1.0, "offline"),
        (True, "online", True, True, 1.0, "online"),
        (True, "online", True, True, 20.0, "online"),  # 3 x 5 s + 5 s grace
        (True, "online", True, True, 20.5, "stale"),
    ],
)
def test_device_status(enabled: bool, state: str, has_snap: bool, online: bool, age: float | None, want: str) -> None:
    snap = Snapshot("d", 0.0, 0.0, online) if has_snap else None
    assert device_status(enabled=enabled, state=state, snap=snap, age=age, interval=5.0) == want


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ('{"token": "abc"}', "abc"),
        (b'{"token": "abc"}', "abc"),
        ('{"token": ""}', None),
        ('{"token": 5}', None),
        ('["abc"]', None),
        ("abc", None),
        (b"\xff\xfe", None),
        ("", None),
    ],
)
def test_token_of_first_message(raw: str | bytes, want: str | None) -> None:
    assert token_of(raw) == want


def test_devices_with_health_and_age_on_the_fake_clock(gateway: Gateway) -> None:
    svc = gateway.services["devices"]
    svc.add({"id": "inv", "profile": "sma", "host": "127.0.0.1", "port": free_port(), "interval": 2, "name": "Roof"})
    svc.add({"id": "off", "profile": "sma", "host": "127.0.0.1", "port": free_port(), "enabled": False})
    svc.add({"id": "new", "profile": "sma", "host": "127.0.0.1", "port": free_port()})
    builder = FrameBuilder(gateway)
    publish(gateway, "inv", pv__power_w=1234.5678, grid__power_w=math.nan)
    publish(gateway, "meter", online=False, error="timeout")  # published, not configured: shown too
    frame = builder.build()
    cards = {d["id"]: d for d in frame["devices"]}
    assert list(cards) == ["inv", "off", "new", "meter"]  # configured ones first, in their order
    assert {k: v["status"] for k, v in cards.items()} == {
        "inv": "online",
        "off": "disabled",
        "new": "waiting",
        "meter": "offline",
    }
    assert cards["inv"]["name"] == "Roof" and cards["inv"]["age_s"] == 0.0 and cards["inv"]["profile"] == "sma"
    assert cards["inv"]["points"]["pv.power_w"] == {"v": 1234.568, "u": "W", "q": "ok"}
    assert cards["inv"]["points"]["grid.power_w"]["v"] is None  # NaN is not JSON
    assert cards["meter"]["error"] == "timeout" and cards["new"]["points"] == {}
    json.dumps(frame, allow_nan=False)
    assert frame["gateway"] == {"state": gateway.state.value, "name": "Roof"}
    assert set(frame["engine"]["lateness_ms"]) >= {"p50", "p99"}
    assert frame["uplink"] is None and frame["outbox"] is None  # not running here: the page says so
    # Time passes without a poll: the reading ages and turns stale after 3 intervals + 5 s.
    gateway.engine.clock.advance(10.0)
    card = builder.build()["devices"][0]
    assert card["age_s"] == 10.0 and card["status"] == "online"
    gateway.engine.clock.advance(1.5)
    card = builder.build()["devices"][0]
    assert card["status"] == "stale" and card["age_s"] == 11.5
    assert builder.build()["ts"] == pytest.approx(gateway.engine.clock.time(), abs=0.001)


def test_actions_and_notifications_revisions_change_when_they_do(gateway: Gateway) -> None:
    notes = Notifications()
    builder = FrameBuilder(gateway, notes)
    assert builder.build()["actions"] is None  # no audit service: tolerated
    audit = AuditLog()
    gateway.services["audit"] = audit
    assert builder.build()["actions"] == {"rev": 0, "newest": None, "ids": [], "count": 0}
    first = audit.record("admin@127.0.0.1", "PATCH /api/devices/inv", "ok")
    assert builder.build()["actions"] == {"rev": 1, "newest": first.id, "ids": [first.id], "count": 1}
    audit.update(first.id, revert="limit back to 100 %")  # same newest id, new revision: the page refetches
    assert builder.build()["actions"]["rev"] == 2
    assert builder.build()["notifications"] == {"count": 0, "newest": None}
    notes.on_event(DeviceEvent("offline", 1.0, "inv"))
    notes.on_event(DeviceEvent("recovered", 2.0, "inv"))
    assert builder.build()["notifications"] == {"count": 2, "newest": 2}
    notes.dismiss(2)
    assert builder.build()["notifications"] == {"count": 1, "newest": 1}


def test_stats_of_running_services_are_passed_through(gateway: Gateway) -> None:
    class Outbox:
        def stats(self) -> dict[str, int]:
            return {"rows": 3, "bytes": 900, "max_bytes": 4096, "dropped": 0}

    gateway.services["outbox"] = Outbox()
    assert FrameBuilder(gateway).build()["outbox"]["rows"] == 3
    # Point quality travels as its value.
    gateway.bus.publish(
        Snapshot(
            "x",
            0.0,
            gateway.engine.clock.monotonic(),
            True,
            MappingProxyType({"pv.power_w": Point(5, "W", Quality.STALE)}),
        )
    )
    assert FrameBuilder(gateway).build()["devices"][0]["points"]["pv.power_w"]["q"] == "stale"
