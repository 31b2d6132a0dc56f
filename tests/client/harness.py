"""Glue for the client tests: client/ on a loopback HTTP server, headless Debian chromium, a bumble link.

The page runs in chromium with a shim for navigator.bluetooth; each call reaches a bumble central (central.py)
that talks over bumble's virtual link to a GATT peripheral (the gateway's BLE side). Everything runs in one
asyncio loop: Playwright's async API and bumble share it, so there is no thread juggling.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bumble.controller import Controller
from bumble.device import Device
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from tests.client.central import Central

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "client"
SHIM = Path(__file__).with_name("webbluetooth_shim.js")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def static_site(directory: Path = CLIENT_DIR) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 and a free port; yields the base URL."""
    handler = functools.partial(_Quiet, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, name="client-static", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def chromium_available() -> bool:
    """Debian's chromium is installed (apt)."""
    return shutil.which(CHROMIUM) is not None


def make_device(link: LocalLink, index: int, name: str) -> Device:
    """A bumble device with its own virtual controller on `link`."""
    address = ":".join([f"F{index}"] * 6)
    controller = Controller(f"C{index}", link=link, public_address=address)
    return Device(name=name, address=Address(address), host=Host(controller, AsyncPipeSink(controller)))


@dataclass
class Browser:
    """A page with (or without) the Web Bluetooth shim, and what it logged."""

    page: Any
    console: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def browser_page(central: Central | None, url: str) -> AsyncIterator[Browser]:
    """Launch chromium, open `url`; with a central, navigator.bluetooth is the shim wired to it."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = await browser.new_context(
                viewport={"width": 412, "height": 915},  # a phone
                device_scale_factor=1,
                is_mobile=True,
                has_touch=True,
            )
            await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url.rstrip("/"))
            page = await context.new_page()
            out = Browser(page)
            page.on("console", lambda msg: out.console.append(f"{msg.type}: {msg.text}"))
            page.on("pageerror", lambda err: out.console.append(f"pageerror: {err}"))
            if central is not None:
                await page.expose_function("__ohmBle", central.handle)
                await page.add_init_script(path=str(SHIM))
                central.page_call = page.evaluate
            await page.goto(url)
            await page.wait_for_selector("body[data-ready='1']", state="attached", timeout=10000)
            yield out
        finally:
            if central is not None:
                central.page_call = None
            await browser.close()


async def screenshot(page: Any, name: str) -> None:
    """Full-page screenshot into test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / name), full_page=True)
