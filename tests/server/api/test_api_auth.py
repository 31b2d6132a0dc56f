"""Auth, errors and limits over real HTTP on loopback."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from server.api.limiter import FailureLimiter
from server.api.routes import all_routes
from server.api.tokens import TOKENS_FILE, load_or_create

from .conftest import Api

pytestmark = pytest.mark.integration


def test_tokens_are_created_once_with_mode_0600(tmp_path: Path) -> None:
    tokens, created = load_or_create(tmp_path)
    assert created and tokens.admin != tokens.read and len(tokens.admin) >= 40
    mode = stat.S_IMODE(os.stat(tmp_path / TOKENS_FILE).st_mode)
    assert mode == 0o600
    again, created_again = load_or_create(tmp_path)
    assert again == tokens and not created_again
    assert tokens.admin not in repr(tokens)
    assert tokens.role_of(tokens.admin) == "admin" and tokens.role_of(tokens.read) == "read"
    assert tokens.role_of("") is None and tokens.role_of(tokens.admin + "x") is None


def test_limiter_window() -> None:
    now = [0.0]
    lim = FailureLimiter(limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert lim.retry_after("a") == 0
        lim.failed("a")
    assert lim.retry_after("a") == pytest.approx(60)
    assert lim.retry_after("b") == 0  # per client
    now[0] = 60.5
    assert lim.retry_after("a") == 0


def test_public_and_auth_levels(api_gateway: Api) -> None:
    anon = api_gateway.client()
    reader = api_gateway.client(api_gateway.read)
    admin = api_gateway.client(api_gateway.admin)
    try:
        hello = anon.call("GET", "/api/hello")
        assert hello.status == 200 and "hello" in hello.json["message"]
        assert "access-control-allow-origin" not in hello.headers  # CORS closed
        assert anon.call("GET", "/health").json["engine"] == "running"

        missing = anon.call("GET", "/api/version")
        assert missing.status == 401 and missing.json["error"] == "unauthorized" and missing.json["detail"]
        assert anon.call("GET", "/api/version", token="wrong").status == 401
        assert anon.call("GET", "/api/version", headers={"Authorization": f"Basic {api_gateway.read}"}).status == 401
        assert reader.call("GET", "/api/version").json["version"]
        forbidden = reader.call("POST", "/api/devices", {"id": "x", "profile": "sma"})
        assert forbidden.status == 403 and forbidden.json["error"] == "forbidden"
        assert reader.call("POST", "/api/modbus/write", {"device": "x", "address": 1, "value": 1}).status == 403
        assert admin.call("GET", "/api/version").status == 200
    finally:
        for c in (anon, reader, admin):
            c.close()


def test_every_non_public_route_needs_a_token(api_gateway: Api) -> None:
    anon = api_gateway.client()
    try:
        for r in all_routes():
            path = r.path.replace("<device_id>", "nope")
            got = anon.call(r.method, path, {} if r.method != "GET" else None)
            if r.auth == "public":
                assert got.status == 200, (r.path, got.status)
            else:
                assert got.status in (401, 429), (r.method, r.path, got.status)
                assert set(got.json) == {"error", "detail"}
    finally:
        anon.close()


def test_rate_limit_on_failures(api_gateway: Api) -> None:
    anon = api_gateway.client()
    try:
        statuses = [anon.call("GET", "/api/state", token=f"guess{i}").status for i in range(11)]
        assert statuses[:10] == [401] * 10 and statuses[10] == 429
        blocked = anon.call("GET", "/api/state", token=api_gateway.read)  # even the right token waits
        assert blocked.status == 429 and int(blocked.headers["retry-after"]) > 0
        assert blocked.json["error"] == "rate_limited"
        assert anon.call("GET", "/api/hello").status == 200  # public routes stay open
    finally:
        anon.close()


def test_errors_are_json_with_the_right_status(api_gateway: Api) -> None:
    admin = api_gateway.client(api_gateway.admin)
    try:
        got = admin.call("GET", "/api/modbus/write")
        assert got.status == 405 and got.json["error"] == "method_not_allowed" and "POST" in got.headers["allow"]
        assert admin.call("GET", "/api/devices/x/nothing").status == 404
        assert admin.call("GET", "/api/nothing").json["error"] == "not_found"
        got = admin.call("POST", "/api/devices", raw=b"{not json")
        assert got.status == 400 and got.json["error"] == "bad_json"
        assert admin.call("POST", "/api/devices", raw=b"[1, 2]").status == 400
        assert admin.call("POST", "/api/devices", raw=b"").status == 400
        big = json.dumps({"id": "x", "profile": "sma", "name": "n" * 70_000}).encode()
        got = admin.call("POST", "/api/devices", raw=big)
        assert got.status == 413 and got.json["error"] == "too_large"
        got = admin.call("POST", "/api/devices", {"id": "bad id!", "profile": "sma"})
        assert got.status == 422 and "id" in got.json["detail"]
        got = admin.call("POST", "/api/devices", {"id": "x", "profile": "no-such-profile", "host": "127.0.0.1"})
        assert got.status == 422
        got = admin.call("POST", "/api/devices", {"id": "x", "profile": "sma", "port": "eighty"})
        assert got.status == 422, got.json
        got = admin.call("POST", "/api/devices", {"id": "x", "profile": "sma", "colour": "red"})
        assert got.status == 422 and "colour" in got.json["detail"]
        assert admin.call("GET", "/api/devices/ghost").status == 404
        assert admin.call("DELETE", "/api/devices/ghost").status == 404
        assert admin.call("PATCH", "/api/devices/ghost", {"interval": 5}).status == 404
        got = admin.call("POST", "/api/modbus/read", {"device": "ghost", "address": 1})
        assert got.status == 404
        got = admin.call("POST", "/api/modbus/read", {"device": "ghost", "address": -1})
        assert got.status == 422 and got.json["detail"].startswith("address:")
    finally:
        admin.close()


def test_token_file_mode_is_repaired_and_damage_is_reported(tmp_path: Path) -> None:
    tokens, _ = load_or_create(tmp_path)
    path = tmp_path / TOKENS_FILE
    os.chmod(path, 0o644)
    assert load_or_create(tmp_path) == (tokens, False)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    path.write_text("{broken")
    with pytest.raises(ValueError, match="damaged token file"):
        load_or_create(tmp_path)
    path.write_text('{"admin": "short", "read": 1}')
    with pytest.raises(ValueError, match="damaged token file"):
        load_or_create(tmp_path)


def test_a_damaged_token_file_leaves_the_gateway_running_without_api(tmp_path: Path) -> None:
    from server.api import attach as api
    from server.config import load
    from server.gateway import Gateway

    from .conftest import free_port

    (tmp_path / TOKENS_FILE).write_text("not json")
    overrides = {"data_dir": tmp_path, "stats_interval": 0, "api.host": "127.0.0.1", "api.port": free_port()}
    gw = Gateway(load(None, env={}, overrides=overrides), services=[api])
    try:
        gw.start()
        assert "api" not in gw.services
    finally:
        gw.stop()
