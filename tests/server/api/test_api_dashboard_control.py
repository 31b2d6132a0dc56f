"""The dashboard's Control panel in a real headless Chromium: set for N s, countdown, revert, cancel, 409, tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modbus_slave.server import Simulator
from tests.server.control.conftest import limit_w
from tests.support import wait_for

from .test_api_dashboard_browser import ARTIFACTS, _open, browser  # noqa: F401 (browser is a fixture)
from .test_api_live_ws import LiveGateway, live_gateway

pytestmark = pytest.mark.integration
POINT = "control.power_limit_w"
CARD = f'#control-points [data-device="inv"][data-point="{POINT}"]'


@pytest.fixture
def rig(tmp_path: Path, sim: Simulator) -> Iterator[tuple[LiveGateway, Simulator, Simulator]]:
    """A gateway with control and the API; simulated SMA ("inv", a power limit) and Growatt ("gro", on/off)."""
    from server.control import attach as control

    with Simulator("growatt") as gro, live_gateway(tmp_path, extra=(control,)) as lg:
        lg.gateway.services["control"].retry_gap = 0.05
        for dev_id, profile, port in (("inv", "sma", sim.port), ("gro", "growatt", gro.port)):
            where = {"transport": "tcp", "host": "127.0.0.1", "port": port}
            lg.gateway.services["devices"].add({"id": dev_id, "profile": profile, "interval": 1, **where})
        yield lg, sim, gro


def _history(page: Any, text: str) -> None:
    page.wait_for_selector(f"#actions li:has-text({text!r})", timeout=10_000)


def test_control_panel_sets_counts_down_reverts_cancels_and_shows_conflicts(
    browser: Any,  # noqa: F811
    rig: tuple[LiveGateway, Simulator, Simulator],
) -> None:
    lg, sim, gro = rig
    ARTIFACTS.mkdir(exist_ok=True)
    page = _open(browser, lg, {"width": 360, "height": 740})
    try:
        # The read token: the panel lists the point but says changes need the admin token, and asks for it.
        page.fill("#token", lg.tokens.read)
        page.click("button[type=submit]")
        card = page.locator(CARD)
        card.wait_for(timeout=10_000)
        page.wait_for_selector("#control-auth:not([hidden])", timeout=5000)
        assert "admin token" in page.locator("#control-auth").inner_text()
        assert card.locator("button.set-btn").is_disabled()
        assert "Nobody holds" in card.locator(".holder").inner_text()
        # The read token typed in as the admin token is refused; the real one unlocks the buttons.
        page.fill("#admin-token", lg.tokens.read)
        page.click("#control-auth button[type=submit]")
        page.wait_for_selector("#control-auth-error:has-text('read token')", timeout=5000)
        page.fill("#admin-token", lg.tokens.admin)
        page.click("#control-auth button[type=submit]")
        page.wait_for_selector("#control-auth", state="hidden", timeout=5000)
        assert card.locator("button.set-btn").is_enabled()
        assert page.evaluate("localStorage.getItem('ohm.admin_token')") == lg.tokens.admin

        # Set 2500 W for a custom 3 s: active with a countdown, the simulator's register changes, then reverts.
        before = limit_w(sim)
        card.locator("input.value").fill("2500")
        card.locator("select.duration").select_option(label="custom")
        card.locator("input.custom").fill("3")
        assert card.locator("button.set-btn").inner_text() == "Set 2500 W for 3 s"
        card.locator("button.set-btn").click()
        card.locator(".status:has-text('reverts to')").wait_for(timeout=10_000)
        active = card.locator(".list.open li", has_text="2500 W · active")
        active.wait_for(timeout=5000)
        assert "s left" in active.locator(".countdown").inner_text()
        assert wait_for(lambda: limit_w(sim) == 2500, 5)
        assert "Held by admin@127.0.0.1" in card.locator(".holder").inner_text()
        page.screenshot(path=str(ARTIFACTS / "dashboard-control-active.png"), full_page=True)
        assert wait_for(lambda: limit_w(sim) == before, 10)  # the timer ran out: the old value is back
        _history(page, "reverted to")
        active.wait_for(state="detached", timeout=10_000)

        # Another action (10 min) cancelled from the page: the point reverts at once.
        card.locator("input.value").fill("1000")
        card.locator("select.duration").select_option(label="10 min")
        assert card.locator("button.set-btn").inner_text() == "Set 1000 W for 10 min"
        card.locator("button.set-btn").click()
        held = card.locator(".list.open li", has_text="1000 W · active")
        held.wait_for(timeout=10_000)
        assert wait_for(lambda: limit_w(sim) == 1000, 5)
        assert ":" in held.locator(".countdown").inner_text()  # "9:59 left"
        held.locator("button.cancel").click()
        held.wait_for(state="detached", timeout=10_000)
        assert wait_for(lambda: limit_w(sim) == before, 10)
        _history(page, "cancelled by admin")

        # Home Assistant (local priority like the admin, another owner) holds the point: the page's set gets a 409
        # naming the holder, shown next to the control.
        control = lg.gateway.services["control"]
        control.submit({"device": "inv", "point": POINT, "value": 4000, "duration_s": 600}, "homeassistant", "local")
        card.locator(".holder:has-text('Held by homeassistant')").wait_for(timeout=10_000)
        card.locator("select.duration").select_option(label="now")
        assert card.locator("button.set-btn").inner_text() == "Set 1000 W now"
        card.locator("button.set-btn").click()
        err = card.locator(".ctl-err")
        err.locator("text=held by homeassistant").wait_for(timeout=10_000)
        assert err.inner_text().startswith("Refused:")
        # A value off the point's range: the 422 reason, next to the control.
        card.locator("input.value").fill("200000")
        card.locator("button.set-btn").click()
        card.locator(".ctl-err:has-text('Not accepted')").wait_for(timeout=10_000)

        # A 0/1 point is a switch: "Switch off now" turns the Growatt off (holding register 0), and on again.
        switch = page.locator('#control-points [data-device="gro"][data-point="control.inverter_on"]')
        assert switch.locator("input[role=switch]").is_checked()  # shown at its safe default: on
        switch.locator("select.duration").select_option(label="now")
        switch.locator("input[role=switch]").uncheck()
        assert switch.locator("button.set-btn").inner_text() == "Switch off now"
        switch.locator("button.set-btn").click()
        switch.locator(".status:has-text('confirmed')").wait_for(timeout=10_000)
        assert gro.image()[(3, 0)] == 0
        switch.locator("input[role=switch]").check()
        switch.locator("button.set-btn").click()
        assert wait_for(lambda: gro.image()[(3, 0)] == 1, 10)
        assert page.evaluate("document.documentElement.scrollWidth") <= 360  # phone: no sideways scrolling
        page.screenshot(path=str(ARTIFACTS / "dashboard-control.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})
        page.screenshot(path=str(ARTIFACTS / "dashboard-control-wide.png"), full_page=True)

        # The admin token stays in the browser beside the read one.
        page.reload()
        page.locator(CARD).wait_for(timeout=10_000)
        assert page.locator("#control-auth").is_hidden()
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        page.context.close()


def test_no_control_panel_without_the_control_service(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    with live_gateway(tmp_path) as lg:
        page = _open(browser, lg, {"width": 360, "height": 740})
        try:
            page.fill("#token", lg.tokens.admin)
            # The page asks for writable points (503: no control service) and keeps the panel out of the way.
            with page.expect_response(lambda r: r.url.endswith("/api/control/points"), timeout=10_000) as asked:
                page.click("button[type=submit]")
            assert asked.value.status == 503
            page.wait_for_selector("#conn.live", timeout=10_000)
            assert page.locator("#control").is_hidden()
            assert page.locator("#control-points .ctl").count() == 0
            assert page.errors == []  # type: ignore[attr-defined]
        finally:
            page.context.close()


def test_a_refused_write_asks_for_the_admin_token_when_the_role_was_not_known(
    browser: Any,  # noqa: F811
    rig: tuple[LiveGateway, Simulator, Simulator],
) -> None:
    lg, sim, _ = rig
    page = _open(browser, lg, {"width": 360, "height": 740})
    try:
        # The page could not tell which token it has (its probe fails): the first write's 403 tells it.
        def without_role(route: Any) -> None:
            answer = route.fetch()
            route.fulfill(response=answer, json={k: v for k, v in answer.json().items() if k != "role"})

        page.route("**/api/dashboard", without_role)
        page.fill("#token", lg.tokens.read)
        page.click("button[type=submit]")
        card = page.locator(CARD)
        card.wait_for(timeout=10_000)
        assert page.locator("#control-auth").is_hidden()
        before = limit_w(sim)
        card.locator("input.value").fill("0")
        card.locator("button.set-btn").click()
        card.locator(".ctl-err:has-text('Changes need the admin token')").wait_for(timeout=10_000)
        page.wait_for_selector("#control-auth:not([hidden])", timeout=5000)
        assert card.locator("button.set-btn").is_disabled()
        assert limit_w(sim) == before  # nothing was written
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        page.context.close()
