"""Public pages, authentication, and the read-only information endpoints."""

from __future__ import annotations

import pytest

from .conftest import Gateway

READ_ONLY = [
    ("GET /api/version", lambda j: isinstance(j["version"], str)),
    ("GET /api/uptime", lambda j: all(v >= 0 for v in j.values() if isinstance(v, int | float))),
    ("GET /api/name", lambda j: isinstance(j["name"], str) and j["name"]),
    ("GET /api/state", lambda j: j["state"] in {"booting", "provisioning", "offline", "online", "degraded"}),
    ("GET /api/crypto", lambda j: j["id"].startswith("ohm-") and j["jwk"]["crv"] == "P-256"),
    ("GET /api/devices", lambda j: isinstance(j["devices"], list)),
    ("GET /api/notifications", lambda j: isinstance(j, dict)),
    ("GET /api/logs", lambda j: isinstance(j, dict)),
    ("GET /api/actions", lambda j: isinstance(j, dict)),
    ("GET /api/control/points", lambda j: isinstance(j, dict)),
    ("GET /api/dashboard", lambda j: isinstance(j, dict)),
    ("GET /api/history", lambda j: isinstance(j, dict)),
    ("GET /api/settings", lambda j: isinstance(j, dict) and j),
    ("GET /api/owner", lambda j: "owner" in j),
    ("GET /api/provisioning", lambda j: isinstance(j, dict)),
]


@pytest.mark.endpoint(*[op for op, _ in READ_ONLY])
@pytest.mark.parametrize(("op", "check"), READ_ONLY, ids=[op for op, _ in READ_ONLY])
def test_read_endpoints_answer_the_read_token(gw: Gateway, op: str, check) -> None:
    method, path = op.split()
    got = gw.call(method, path, token="read")
    assert got.status == 200, (op, got.status, got.body[:300])
    assert got.headers.get("Content-Type", "").startswith("application/json")
    assert check(got.json), got.json


def test_no_token_or_a_wrong_one_is_refused(gw: Gateway) -> None:
    # A few only: failed logins are limited (10 a minute per address) and the suite shares its address.
    missing = gw.call("GET", "/api/state", token=None)
    assert missing.status == 401 and missing.json["error"]
    bad = gw.call("GET", "/api/version", token="not-a-token-" + "x" * 30)
    assert bad.status in (401, 429) and "error" in bad.json


@pytest.mark.endpoint(
    "GET /api/hello", "GET /health", "GET /", "GET /ui/dashboard.js", "GET /ui/dashboard.css", "GET /doc"
)
def test_public_pages(gw: Gateway) -> None:
    assert gw.call("GET", "/api/hello", token=None).status == 200
    assert gw.call("GET", "/health", token=None).status == 200
    page = gw.call("GET", "/", token=None)
    assert page.status == 200 and b"<html" in page.body.lower()
    js = gw.call("GET", "/ui/dashboard.js", token=None)
    assert js.status == 200 and "javascript" in js.headers.get("Content-Type", "")
    css = gw.call("GET", "/ui/dashboard.css", token=None)
    assert css.status == 200 and "css" in css.headers.get("Content-Type", "")
    doc = gw.call("GET", "/doc", token=None)
    assert doc.status == 200 and b"/api/openapi.json" in doc.body


@pytest.mark.endpoint("GET /metrics")
def test_metrics_are_prometheus_text(gw: Gateway) -> None:
    got = gw.call("GET", "/metrics", token="read")
    assert got.status == 200 and got.headers.get("Content-Type", "").startswith("text/plain")
    assert b"# TYPE " in got.body
    assert gw.call("GET", "/metrics", token=None).status == 401


@pytest.mark.endpoint("PUT /api/logs/level")
def test_log_level_change_and_back(gw: Gateway) -> None:
    got = gw.call("PUT", "/api/logs/level", {"level": "debug"})
    assert got.status == 200, got.body
    before = got.json["before"]
    assert gw.call("PUT", "/api/logs/level", {"level": before}).status == 200
    assert gw.call("PUT", "/api/logs/level", {"level": "loud"}).status in (400, 422)
    assert gw.call("PUT", "/api/logs/level", {"level": "info"}, token="read").status == 403
