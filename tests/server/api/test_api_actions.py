"""The action history over real HTTP: authenticated changes are recorded (refused ones too), reads are not."""

from __future__ import annotations

import pytest

from .conftest import Api, wait_for


@pytest.mark.integration
def test_changes_are_recorded_and_listed_newest_first(api_gateway: Api) -> None:
    admin = api_gateway.client(api_gateway.admin)
    reader = api_gateway.client(api_gateway.read)
    assert admin.call("PUT", "/api/logs/level", {"level": "info"}).status == 200
    assert admin.call("DELETE", "/api/notifications/99").status == 404
    assert reader.call("PUT", "/api/logs/level", {"level": "debug"}).status == 403  # not authenticated as admin
    assert admin.call("PUT", "/api/logs/level", {"level": "info"}, token=None).status == 401
    reader.call("GET", "/api/state")
    got = reader.call("GET", "/api/actions").json["actions"]
    assert [(a["what"], a["result"]) for a in got] == [
        ("DELETE /api/notifications/99", "refused: 404"),
        ("PUT /api/logs/level", "ok"),
    ]
    assert got[0]["who"] == "admin@127.0.0.1"
    assert reader.call("GET", "/api/actions?limit=1").json["actions"][0]["id"] == got[0]["id"]
    assert reader.call("GET", "/api/actions?limit=0").status == 422
    # Persisted through the engine's audit lane.
    wait_for(lambda: (api_gateway.gateway.data_dir / "audit.sqlite").exists())
