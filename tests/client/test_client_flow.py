"""The setup page end to end: headless chromium -> Web Bluetooth shim -> bumble central -> virtual link ->
GATT peripheral speaking the Ohm channel -> HTTP -> a real `server` gateway -> Modbus simulator.

The peripheral is the real BLE service (bluetooth/, bumble backend) in every test but one, which needs what it
does not offer: an MTU report in the info value (stand-in peripheral).
Tests run on the session's loop (harness.Site), which holds Playwright's async API and the stand-in's bumble;
the real service keeps its own BLE loop thread and the central runs its bumble calls there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from bumble.link import LocalLink

from bluetooth.backends.bumble_backend import BumbleBackend
from bluetooth.config import load as load_ble
from bluetooth.pop import load_or_create as load_pop
from bluetooth.service import BleService
from modbus_slave.server import Simulator
from tests.client.central import Central
from tests.client.conftest import ServerApi
from tests.client.harness import Site, make_device, screenshot
from tests.client.standin_api import Standins, standin_api
from tests.client.standin_gateway import StandinGateway

pytestmark = pytest.mark.integration

POP = "7K3M9QXR2D"
WIFI_PASSWORD = "correct horse battery staple"
TIMEOUT = 20000  # ms for UI waits: generous, other helpers share the 2 cores


@dataclass
class World:
    """The BLE side of a test: the gateway's peripheral and the phone's central on one virtual link."""

    gateway: StandinGateway
    central: Central


@dataclass
class ServiceWorld:
    """The real BLE service (bluetooth/) on a virtual link, the phone's central, the PoP and the API stand-ins."""

    service: BleService
    central: Central
    pop: str
    standins: Standins


@contextlib.asynccontextmanager
async def service_world(
    server: ServerApi, window_open: bool = True, delay: dict[str, float] | None = None
) -> AsyncIterator[ServiceWorld]:
    """bluetooth's BleService (bumble backend on a LocalLink) forwarding to the real server; a central with MTU 185."""
    standins = Standins(window_open=window_open, delay=dict(delay or {}))
    with standin_api(server.url, standins, server.gateway.services or {}) as url:
        link = LocalLink()
        cfg = load_ble(env={}, data_dir=server.gateway.data_dir, server_url=url, poll_interval=0.2)
        service = BleService(cfg, BumbleBackend(link=link, advertising_interval=20.0))
        central: Central | None = None
        try:
            await asyncio.to_thread(service.start)
            # The service has read the window state from the server (through the front) once it says "server".
            await until(lambda: service.window.mode == "server" and service.window.state.open == window_open)

            async def phone() -> Any:  # bumble objects are made on the loop that runs the link
                return make_device(link, 1, "phone")

            device = await asyncio.wrap_future(service.aio.run(phone()))
            central = Central(device, mtu=185, ble_loop=service.aio.loop)
            await central.start()
            yield ServiceWorld(service, central, load_pop(server.gateway.data_dir)[0], standins)
        finally:
            if central is not None:
                await central.stop()
            await asyncio.to_thread(service.stop)


async def until(cond: Any, timeout: float = 10.0) -> None:
    """Wait (without blocking the loop) until cond() is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def standin_world(
    server: ServerApi, local: dict[str, Any], window: bool = True, mtu: int = 185, report_mtu: bool = False
) -> AsyncIterator[World]:
    """A stand-in gateway peripheral advertising Ohm-1A2B and a central negotiating `mtu`, on a LocalLink."""
    link = LocalLink()
    gw = StandinGateway(
        make_device(link, 0, "Ohm-1A2B"),
        POP,
        server.url,
        server.admin,
        local=local,
        window=window,
        report_mtu=report_mtu,
    )
    central = Central(make_device(link, 1, "phone"), mtu=mtu)
    try:
        await gw.start()
        await central.start()
        yield World(gw, central)
    finally:
        await central.stop()
        await gw.stop()
        await central.device.power_off()


async def find_and_prove(page: Any, code: str) -> None:
    """Find the gateway and enter `code` on the page."""
    await page.click("#find-btn")
    await page.wait_for_selector("#pop-input", state="visible", timeout=TIMEOUT)
    await page.fill("#pop-input", code)
    await page.click("#pop-btn")


def http_call(server: ServerApi, method: str, path: str) -> Any:
    """Call the server's API with the admin token; the JSON answer."""
    req = urllib.request.Request(server.url + path, method=method, headers={"Authorization": f"Bearer {server.admin}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def http_get(server: ServerApi, path: str) -> Any:
    """GET a JSON document from the server's API with the admin token."""
    return http_call(server, "GET", path)


def devs_id(server: ServerApi) -> str:
    """The id of the one device configured on the server."""
    (dev,) = server.gateway.services["devices"].list()
    return str(dev["id"])


def status_text(page: Any) -> Any:
    """The status line's text."""
    return page.text_content("#status")


def test_whole_setup_flow(system_api: ServerApi, site: Site, sim: Simulator) -> None:
    """All real: the BLE service, the server with Wi-Fi on NetworkManager's mock, the Modbus simulator. Find, PoP,
    Wi-Fi scan + join, owner, admin token, discovery scan, add device, live values."""
    server_api = system_api

    async def run() -> None:
        async with service_world(server_api) as world, site.page(world.central) as b:
            page = b.page
            await screenshot(page, "client-start.png")
            # Typed as a person might: lower case, with a dash; the page normalises it.
            await find_and_prove(page, f"{world.pop[:5]}-{world.pop[5:]}".lower())
            await page.wait_for_selector("#wifi", state="visible", timeout=TIMEOUT)
            assert f"Connected to {world.service.name}" in await page.text_content("#gateway-name")

            await page.click("#wifi-scan-btn")
            await page.click("#wifi-list button[data-ssid='HomeNet']", timeout=TIMEOUT)
            assert await page.input_value("#wifi-ssid") == "HomeNet"
            await page.fill("#wifi-password", WIFI_PASSWORD)
            await page.click("#wifi-join-btn")
            await page.wait_for_selector("#wifi-result", state="visible", timeout=TIMEOUT)
            assert "Joined HomeNet" in await page.text_content("#wifi-result")
            assert await page.input_value("#wifi-password") == ""

            await page.fill("#owner-input", "ada@example.org")
            await page.fill("#owner-name", "Garage")
            await page.click("#owner-btn")
            await page.wait_for_selector("#owner-result", state="visible", timeout=TIMEOUT)

            await page.click("#pair-btn")
            await page.wait_for_selector("#token-box", state="visible", timeout=TIMEOUT)
            assert await page.text_content("#token-value") == server_api.admin
            await page.click("#copy-btn")
            await page.wait_for_function("document.getElementById('status').textContent.includes('copied')")
            assert await page.evaluate("navigator.clipboard.readText()") == server_api.admin

            await page.fill("#scan-hosts", "127.0.0.1")
            await page.fill("#scan-ports", str(sim.port))
            await page.click("#scan-btn")
            add = page.locator("#scan-found button", has_text="Add")
            await add.first.wait_for(timeout=TIMEOUT)
            await page.wait_for_selector("#scan-progress:has-text('Search done')", timeout=TIMEOUT)
            await screenshot(page, "client-scan.png")
            await add.first.click()

            # Live values: rows with numbers arrive, and the page keeps asking once a second.
            await page.wait_for_selector("#live-table tbody tr", timeout=TIMEOUT)
            readings = f"GET /api/devices/{devs_id(server_api)}/readings"
            t0, before = asyncio.get_running_loop().time(), world.standins.passed.count(readings)
            await until(lambda: world.standins.passed.count(readings) >= before + 3, timeout=TIMEOUT / 1000)
            assert asyncio.get_running_loop().time() - t0 > 1.5  # not a burst: paced at about 1 Hz
            await screenshot(page, "client-flow.png")
            rows = await page.eval_on_selector_all(
                "#live-table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
            )
            assert any(float(v) != 0 for _, v, _ in rows if v.replace(".", "", 1).lstrip("-").isdigit()), rows
            assert not [c for c in b.console if c.startswith("pageerror")], b.console

            # The device really was added on the server, with what discovery found.
            devs = server_api.gateway.services["devices"].list()
            assert [(d["profile"], d["port"]) for d in devs] == [("sma", sim.port)], devs

            # What crossed the air: every write fits one ATT write at MTU 185, nothing secret in clear.
            air = world.central.air
            assert world.central.writes_over == []
            assert max(len(raw) for kind, raw in air if kind == "write") <= 182
            assert sum(1 for kind, _ in air if kind == "notify") > 10  # replies were chunked to the MTU
            blob = b"".join(raw for _, raw in air)
            for secret in (WIFI_PASSWORD.encode(), server_api.admin.encode(), world.pop.encode()):
                assert secret not in blob
                assert base64.b64encode(secret)[:16] not in blob
            # ... and the server did it all itself: no stand-in answered anything.
            assert world.standins.answered == []
            services = server_api.gateway.services
            assert services["provisioning"].status()["provisioned"] is True  # Wi-Fi known now
            owner = await asyncio.to_thread(http_get, server_api, "/api/owner")
            assert (owner["owner"], owner["name"]) == ("ada@example.org", "Garage")
            wifi = await asyncio.to_thread(http_get, server_api, "/api/wifi")
            assert (wifi["ssid"], wifi["device_state"]) == ("HomeNet", "activated")

    site.run(run())


def test_wrong_pop_is_explained(server_api: ServerApi, site: Site) -> None:
    """A malformed code never leaves the page; a wrong one is refused with a clear message and unlocks nothing;
    a retry with the right code works."""

    async def run() -> None:
        async with service_world(server_api) as world, site.page(world.central) as b:
            page = b.page
            await find_and_prove(page, "12345")
            await page.wait_for_selector("#status.error", timeout=TIMEOUT)
            assert "10 letters and digits" in await status_text(page)
            assert not [raw for kind, raw in world.central.air if kind == "write"]

            await page.fill("#pop-input", "0000000000")
            await page.click("#pop-btn")
            await page.wait_for_function(
                "document.getElementById('status').textContent.includes('does not match')", timeout=TIMEOUT
            )
            assert await page.is_hidden("#wifi")
            await screenshot(page, "client-wrong-pop.png")
            await page.fill("#pop-input", world.pop)
            await page.click("#pop-btn")
            await page.wait_for_selector("#wifi", state="visible", timeout=TIMEOUT)

    site.run(run())


def test_too_many_wrong_codes_lock_the_gateway(server_api: ServerApi, site: Site) -> None:
    """Five wrong codes: the (real) service refuses handshakes for a while, and the page says how long."""

    async def run() -> None:
        async with service_world(server_api) as world, site.page(world.central) as b:
            page = b.page
            await find_and_prove(page, "0000000000")
            said = []
            for attempt in range(6):
                if attempt:
                    await page.click("#pop-btn")
                await page.wait_for_function("!document.getElementById('pop-btn').disabled", timeout=TIMEOUT)
                said.append(await status_text(page))
            assert all("does not match" in text for text in said[:5]), said
            assert "Too many wrong codes. Wait 5 minute(s)" in said[5], said
            await page.fill("#pop-input", world.pop)  # the right code is refused too while locked
            await page.click("#pop-btn")
            await page.wait_for_function("!document.getElementById('pop-btn').disabled", timeout=TIMEOUT)
            assert "Too many wrong codes" in await status_text(page)
            assert await page.is_hidden("#wifi")

    site.run(run())


def test_closed_window_and_cancelled_chooser(system_api: ServerApi, site: Site) -> None:
    """The server's provisioning window closed (real service and server): say how to open it. Chooser closed
    without a pick: say so."""
    server_api = system_api
    http_call(server_api, "DELETE", "/api/provisioning/window")
    assert http_call(server_api, "GET", "/api/provisioning")["window_open"] is False

    async def run() -> None:
        async with service_world(server_api, window_open=False) as world, site.page(world.central) as b:
            page = b.page
            world.central.cancel_chooser = True
            await page.click("#find-btn")
            await page.wait_for_selector("#status.error", timeout=TIMEOUT)
            assert "No gateway was chosen" in await status_text(page)
            world.central.cancel_chooser = False
            await find_and_prove(page, world.pop)
            await page.wait_for_function(
                "document.getElementById('status').textContent.includes('setup window is closed')", timeout=TIMEOUT
            )
            assert await page.is_hidden("#wifi")
            assert world.standins.answered == []  # the closed window came from the server itself

    site.run(run())


def test_disconnect_mid_request(server_api: ServerApi, site: Site) -> None:
    """The link drops while a Wi-Fi scan is running (real service, slow server): the page says so and offers to
    find the gateway again; the service keeps running, so a fresh session works, twice in a row."""

    async def run() -> None:
        slow = {"POST /api/wifi/scan": 4.0}
        async with service_world(server_api, delay=slow) as world, site.page(world.central) as b:
            page = b.page
            await find_and_prove(page, world.pop)
            await page.wait_for_selector("#wifi", state="visible", timeout=TIMEOUT)
            await page.click("#wifi-scan-btn")
            await page.wait_for_function(
                "document.getElementById('status').textContent.includes('Scanning')", timeout=TIMEOUT
            )
            await until(lambda: "POST /api/wifi/scan" in world.standins.answered)  # in flight at the server
            await world.central.drop_links()
            await page.wait_for_function(
                "document.getElementById('status').textContent.includes('disconnected')", timeout=TIMEOUT
            )
            assert await page.is_hidden("#wifi")
            assert await page.is_visible("#find-btn")
            await screenshot(page, "client-disconnected.png")
            # Find it again: a fresh session works (and closing the old one does not undo the new one).
            await find_and_prove(page, world.pop)
            await page.wait_for_selector("#wifi", state="visible", timeout=TIMEOUT)
            await find_and_prove(page, world.pop)
            await page.wait_for_selector("#wifi", state="visible", timeout=TIMEOUT)
            assert "disconnected" not in await status_text(page)

    site.run(run())


def test_timeout_then_busy_is_retried(server_api: ServerApi, site: Site) -> None:
    """The page stops waiting for a slow request; the real service answers the next one 409 busy until the slow
    one is done; the channel retries and gets its answer (and ignores the late one)."""

    async def run() -> None:
        slow = {"GET /api/version": 2.5}
        async with service_world(server_api, delay=slow) as world, site.page(world.central) as b:
            got = await b.page.evaluate(
                """async (pop) => {
                  const ch = await import('./ohm-channel.js');
                  const dev = await navigator.bluetooth.requestDevice({filters: [{namePrefix: "Ohm-"}]});
                  const c = await ch.OhmChannel.open(dev);
                  await c.handshake(pop);
                  let first = null;
                  try { await c.call({method: "GET", path: "/api/version"}, 500); } catch (e) { first = e.code; }
                  const second = await c.rest("GET", "/api/hello");
                  const third = await c.rest("GET", "/api/name");
                  return {first, second, third};
                }""",
                world.pop,
            )
            assert got["first"] == "timeout"
            assert got["second"] == {"message": "hello from the Ohm gateway"}
            assert got["third"]["name"].startswith("Ohm")

    site.run(run())


async def quick_wifi_scan(msg: dict[str, Any]) -> tuple[int, Any]:
    """A Wi-Fi scan answer with enough networks to need several notifications at MTU 23."""
    return 200, {"networks": [{"ssid": f"Net{i}", "signal": 90 - i, "security": "wpa2"} for i in range(8)]}


def test_small_mtu_reported_by_the_gateway(server_api: ServerApi, site: Site) -> None:
    """A gateway that reports the link's MTU in its info (proposed) gets chunks that fit MTU 23 with no long write."""

    async def run() -> None:
        local = {"op:wifi_scan": quick_wifi_scan}
        async with (
            standin_world(server_api, local, mtu=23, report_mtu=True) as world,
            site.page(world.central) as b,
        ):
            page = b.page
            await find_and_prove(page, POP)
            await page.wait_for_selector("#wifi", state="visible", timeout=TIMEOUT)
            await page.click("#wifi-scan-btn")
            await page.wait_for_selector("#wifi-list button[data-ssid='Net7']", timeout=TIMEOUT)
            writes = [raw for kind, raw in world.central.air if kind == "write"]
            assert world.central.writes_over == [] and max(map(len, writes)) == 20
            assert len(writes) > 10

    site.run(run())


def test_no_web_bluetooth_points_elsewhere(site: Site) -> None:
    """Without navigator.bluetooth (iOS Safari, Firefox): explain, point to Chrome/Edge or an Improv app."""

    async def run() -> None:
        async with site.page() as b:
            page = b.page
            assert await page.is_visible("#unsupported")
            assert await page.is_hidden("#find")
            text = await page.text_content("#unsupported")
            for words in ("iPhone", "Firefox", "Chrome", "Edge", "Android", "Improv"):
                assert words in text
            await screenshot(page, "client-unsupported.png")

    site.run(run())
