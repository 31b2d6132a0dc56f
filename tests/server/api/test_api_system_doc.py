"""/doc: a self-contained page (nothing from elsewhere) that renders /api/openapi.json in a real headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.api.openapi import document
from tests.server.wifi.system_gateway import system_gateway
from tests.support import CHROMIUM_MISSING, chromium_available, launch_chromium, wait_for

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


def test_doc_page_is_served_without_a_token_and_loads_nothing_from_elsewhere(tmp_path: Path) -> None:
    with system_gateway(tmp_path / "gw") as gw:
        got = gw.client().call("GET", "/doc")
        assert got.status == 200 and got.headers["content-type"].startswith("text/html")
        html = got.body.decode()
        assert "/api/openapi.json" in html
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no CDN, no remote font or script
        assert "default-src 'none'" in got.headers["content-security-policy"]


def test_doc_page_lists_every_operation_in_chromium(tmp_path: Path) -> None:
    if not chromium_available():
        pytest.skip(CHROMIUM_MISSING)
    from playwright.sync_api import sync_playwright

    with system_gateway(tmp_path / "gw") as gw, sync_playwright() as pw:
        browser = launch_chromium(pw.chromium)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1400})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("requestfailed", lambda req: errors.append(f"failed: {req.url}"))
            page.goto(f"http://127.0.0.1:{gw.port}/doc")
            expected = sum(len(ops) for ops in document()["paths"].values())
            page.locator("details.op").nth(expected - 1).wait_for(timeout=10000)  # (the CSP forbids eval'd waits)
            assert page.locator("details.op").count() == expected
            page.click("#settings_patch > summary")
            text = page.inner_text("#settings_patch")
            assert "PATCH" in text and "/api/settings" in text and "admin token" in text and "mqtt.port" in text
            # try a call from the page with the read token
            page.fill("#token", gw.read)
            page.dispatch_event("#token", "change")
            page.click("#provisioning_get > summary")
            page.click("#provisioning_get button")
            answer = page.locator("#provisioning_get pre").last
            wait_for(lambda: answer.inner_text().startswith("200"), 10)
            assert "window_open" in answer.inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            page.keyboard.press("Home")
            page.screenshot(path=str(ARTIFACTS / "api-doc.png"), full_page=False)
            assert errors == []
        finally:
            browser.close()
