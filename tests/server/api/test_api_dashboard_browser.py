"""The dashboard in a real headless Chromium against a real gateway and simulator on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.api.live import FrameBuilder, LiveServer
from server.uplink.broker import free_port
from tests.support import CHROMIUM_MISSING, chromium_available, launch_chromium

from .conftest import Client
from .test_api_live_ws import LiveGateway, fast_simulator, live_gateway

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (never a downloaded browser)."""
    if not chromium_available():
        pytest.skip(CHROMIUM_MISSING)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch_chromium(pw.chromium)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[LiveGateway]:
    """A gateway polling a fast-moving simulated inverter every second."""
    from server.control import attach as control  # timed control actions (issue 10) for the action list

    with fast_simulator() as sim, live_gateway(tmp_path, extra=(control,)) as lg:
        dev = {"id": "inv", "profile": "sma", "host": "127.0.0.1", "port": sim.port, "interval": 1, "name": "Roof"}
        lg.gateway.services["devices"].add(dev)
        yield lg


def _power(page: Any) -> str:
    """The PV power shown on the inverter's card."""
    return str(page.locator('[data-id="inv"] dt:text-is("pv.power_w") + dd').inner_text())


def _open(browser: Any, lg: LiveGateway, viewport: dict[str, int]) -> Any:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.errors = errors  # type: ignore[attr-defined]
    page.goto(f"http://127.0.0.1:{lg.port}/")
    return page


def test_dashboard_live_values_chart_and_actions(browser: Any, running: LiveGateway) -> None:
    lg = running
    ARTIFACTS.mkdir(exist_ok=True)
    page = _open(browser, lg, {"width": 1280, "height": 900})
    try:
        # A wrong token is refused and the form says so.
        page.fill("#token", "not-a-token")
        page.click("button[type=submit]")
        page.wait_for_selector("#login-error:has-text('refused')", timeout=5000)
        page.fill("#token", lg.tokens.read)
        page.click("button[type=submit]")
        page.wait_for_selector("#conn.live", timeout=10_000)
        page.wait_for_selector('[data-id="inv"] .badge.online', timeout=10_000)
        assert page.locator('[data-id="inv"] h3').inner_text() == "Roof"
        first = _power(page)
        page.wait_for_function(
            "(v) => document.querySelector('[data-id=\"inv\"] dt + dd').textContent !== v", arg=first, timeout=5000
        )
        assert _power(page) != first  # live values move within a few seconds
        # The chart: at least one power series drawn from /api/history.
        page.wait_for_selector("#chart[data-series]:not([data-series='0'])", timeout=15_000)
        assert page.locator("#legend li").count() >= 1
        # A change through the API shows up in the action list, fetched because the frame said so.
        admin = Client(lg.port, lg.tokens.admin)
        try:
            assert admin.call("PATCH", "/api/devices/inv", {"name": "Roof west"}).status == 200
        finally:
            admin.close()
        page.wait_for_selector("#actions li:has-text('PATCH /api/devices/inv')", timeout=5000)
        assert "admin@127.0.0.1" in page.locator("#actions li").first.inner_text()
        # A timed control action ("limit to 3 kW for 10 min") is listed as open, with its revert time.
        admin = Client(lg.port, lg.tokens.admin)
        try:
            body = {"device": "inv", "point": "control.power_limit_w", "value": 3000, "duration_s": 600}
            assert admin.call("POST", "/api/actions", body).status in (200, 201, 202)
        finally:
            admin.close()
        page.wait_for_selector("#open-actions li:has-text('control.power_limit_w = 3000')", timeout=10_000)
        page.wait_for_selector("#open-actions li:has-text('reverts to')", timeout=10_000)
        page.wait_for_selector('[data-id="inv"] h3:text-is("Roof west")', timeout=10_000)
        assert page.locator("#gw-state").inner_text() != "-"
        assert "lateness" in page.locator("#engine").inner_text()
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        # The token stays in the browser: a reload goes straight to the live view.
        page.reload()
        page.wait_for_selector("#conn.live", timeout=10_000)
        assert page.locator("#login").is_hidden()
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        page.context.close()


def test_dashboard_on_a_phone_screen_and_disconnected_state(browser: Any, running: LiveGateway) -> None:
    lg = running
    ARTIFACTS.mkdir(exist_ok=True)
    page = _open(browser, lg, {"width": 360, "height": 740})
    try:
        page.fill("#token", lg.tokens.read)
        page.click("button[type=submit]")
        page.wait_for_selector('[data-id="inv"] .badge.online', timeout=10_000)
        page.wait_for_selector("#chart[data-series]:not([data-series='0'])", timeout=15_000)
        # A device that does not answer: its card says offline and why.
        dead = {"id": "gone", "profile": "sma", "host": "127.0.0.1", "port": free_port(), "interval": 1}
        lg.gateway.services["devices"].add(dead)
        page.wait_for_selector('[data-id="gone"] .badge.offline', timeout=10_000)
        assert "last error" in page.locator('[data-id="gone"] .err').inner_text()
        assert "no good reading yet" in page.locator('[data-id="gone"] .sub').inner_text()
        # Nothing wider than the screen: no sideways scrolling on a phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        card = page.locator('[data-id="inv"]').bounding_box()
        assert card is not None and card["width"] <= 360
        page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
        # The WebSocket goes away: the page says "disconnected" clearly and keeps retrying.
        lg.gateway.services["live"].stop()
        page.wait_for_selector("#conn.disconnected", timeout=10_000)
        assert page.locator("#banner").is_visible()
        assert "Disconnected" in page.locator("#banner").inner_text()
        assert page.locator("#conn").inner_text() == "disconnected"
        time.sleep(0.2)
        page.screenshot(path=str(ARTIFACTS / "dashboard-disconnected.png"))
        # It comes back on the same port (a gateway restart): the page reconnects on its own (backoff 1, 2, 4 s).
        again = LiveServer(FrameBuilder(lg.gateway).build, lg.tokens, "127.0.0.1", lg.ws_port).start()
        try:
            page.wait_for_selector("#conn.live", timeout=15_000)
            assert page.locator("#banner").is_hidden()
        finally:
            again.stop()
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        page.context.close()
