"""Notifications from bus events: kept bounded with ids, listed and dismissed over real HTTP."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from server.api.notifications import Notifications
from server.bus import DeviceEvent

from .conftest import Api


def test_bounded_with_increasing_ids_and_plain_detail() -> None:
    notes = Notifications(keep=2)
    for i in range(3):
        notes.on_event(DeviceEvent("offline", 100.0 + i, f"d{i}", MappingProxyType({"error": ValueError("x")})))
    got = notes.list()
    assert [n["id"] for n in got] == [2, 3] and [n["device_id"] for n in got] == ["d1", "d2"]
    assert got[0]["detail"] == {"error": "x"}
    assert notes.dismiss(2) is True and notes.dismiss(2) is False and notes.dismiss(1) is False
    assert [n["id"] for n in notes.list()] == [3]


@pytest.mark.integration
def test_events_become_notifications_and_can_be_dismissed(api_gateway: Api) -> None:
    admin = api_gateway.client(api_gateway.admin)
    reader = api_gateway.client(api_gateway.read)
    bus = api_gateway.gateway.bus
    try:
        bus.emit(DeviceEvent("offline", 1.0, "inv", MappingProxyType({"error": "timed out"})))
        bus.emit(DeviceEvent("recovered", 2.0, "inv"))
        bus.emit(DeviceEvent("outbox_dropped", 3.0, None, MappingProxyType({"count": 5})))
        got = reader.call("GET", "/api/notifications")
        assert got.status == 200
        notes = got.json["notifications"]
        assert [(n["kind"], n["device_id"]) for n in notes] == [
            ("offline", "inv"),
            ("recovered", "inv"),
            ("outbox_dropped", None),
        ]
        assert notes[0]["detail"] == {"error": "timed out"} and notes[2]["detail"] == {"count": 5}

        first = notes[0]["id"]
        assert reader.call("DELETE", f"/api/notifications/{first}").status == 403
        got = admin.call("DELETE", f"/api/notifications/{first}")
        assert got.status == 200 and got.json == {"dismissed": first}
        assert [n["kind"] for n in reader.call("GET", "/api/notifications").json["notifications"]] == [
            "recovered",
            "outbox_dropped",
        ]
        for unknown in (str(first), "999", "abc", "-1"):
            got = admin.call("DELETE", f"/api/notifications/{unknown}")
            assert got.status == 404 and got.json["error"], unknown
        assert reader.call("GET", "/api/notifications", token=None).status == 401
    finally:
        admin.close()
        reader.close()
