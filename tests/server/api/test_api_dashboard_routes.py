"""The dashboard over real HTTP: the page and its files with a strict CSP, /api/dashboard, /api/history."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from modbus_slave.server import Simulator
from server.api.dashboard_routes import STATIC

from .conftest import Client, wait_for
from .test_api_live_ws import live_gateway

pytestmark = pytest.mark.integration


class _Tags(HTMLParser):
    """Collects every start tag with its attributes and the text inside <script>/<style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in and data.strip():
            self.inline.append(data)


def test_page_and_assets_are_public_with_a_strict_csp(tmp_path: Path) -> None:
    with live_gateway(tmp_path) as lg:
        anon = Client(lg.port)
        try:
            page = anon.call("GET", "/")
            assert page.status == 200 and page.headers["content-type"].startswith("text/html")
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
            assert f"connect-src 'self' ws://127.0.0.1:{lg.ws_port}" in csp  # 'self' does not cover another port
            assert "frame-ancestors 'none'" in csp and page.headers["x-content-type-options"] == "nosniff"
            tags = _Tags()
            tags.feed(page.body.decode())
            assert tags.inline == []  # no inline script or style: the CSP would block them anyway
            scripts = [a for t, a in tags.tags if t == "script"]
            assert scripts and all(str(a.get("src", "")).startswith("/ui/") for a in scripts)
            for _, attrs in tags.tags:
                assert not [k for k in attrs if k.startswith("on") or k == "style"], attrs
            assert not re.search(rb"(src|href)=\"(https?:)?//", page.body)  # nothing from the internet
            js = anon.call("GET", "/ui/dashboard.js")
            assert js.status == 200 and "javascript" in js.headers["content-type"]
            assert b"innerHTML" not in js.body and b"eval(" not in js.body  # gateway text goes in as text only
            css = anon.call("GET", "/ui/dashboard.css")
            assert css.status == 200 and css.headers["content-type"].startswith("text/css")
            assert "content-security-policy" in css.headers
            assert anon.call("GET", "/ui/doc.html").status == 404
            assert anon.call("GET", "/ui/../routes.py").status == 404
            assert (STATIC / "dashboard.html").is_file()
        finally:
            anon.close()


def test_dashboard_info_needs_a_token_and_names_the_websocket(tmp_path: Path) -> None:
    with live_gateway(tmp_path) as lg:
        reader = Client(lg.port, lg.tokens.read)
        try:
            assert reader.call("GET", "/api/dashboard", token=None).status == 401
            got = reader.call("GET", "/api/dashboard").json
            assert got == {"ws_port": lg.ws_port, "ws_path": "/live", "history_interval_s": 10.0, "role": "read"}
            assert reader.call("GET", "/api/dashboard", token=lg.tokens.admin).json["role"] == "admin"
        finally:
            reader.close()
    with live_gateway(tmp_path / "off", **{"api.ws_port": 0}) as lg:
        reader = Client(lg.port, lg.tokens.read)
        try:
            assert reader.call("GET", "/api/dashboard").json["ws_port"] is None
            assert "connect-src 'self';" in reader.call("GET", "/").headers["content-security-policy"]
        finally:
            reader.close()


def test_history_of_a_polled_device(tmp_path: Path, sim: Simulator) -> None:
    with live_gateway(tmp_path) as lg:
        reader = Client(lg.port, lg.tokens.read)
        admin = Client(lg.port, lg.tokens.admin)
        try:
            assert reader.call("GET", "/api/history").json == {"interval_s": 10.0, "minutes": 60, "devices": {}}
            dev = {"id": "inv", "profile": "sma", "host": "127.0.0.1", "port": sim.port, "interval": 1}
            assert admin.call("POST", "/api/devices", dev).status == 201
            got = wait_for(
                lambda: reader.call("GET", "/api/history?device=inv&minutes=5").json["devices"]["inv"]["t"], 10
            )
            inv = reader.call("GET", "/api/history?device=inv").json["devices"]["inv"]
            assert len(got) == 1 and set(inv["series"]) == {"pv.power_w", "inverter.power_w"}
            assert inv["series"]["pv.power_w"][0] > 0 and inv["units"]["pv.power_w"] == "W"
            assert list(reader.call("GET", "/api/history").json["devices"]) == ["inv"]
            for bad in ("minutes=0", "minutes=61", "minutes=x", "when=now"):
                assert reader.call("GET", f"/api/history?{bad}").status == 422, bad
            assert reader.call("GET", "/api/history?device=nope").status == 404
            assert reader.call("GET", "/api/history", token=None).status == 401
        finally:
            reader.close()
            admin.close()
