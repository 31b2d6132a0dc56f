"""Glue for the client tests: client/ on a loopback HTTP server, headless Debian chromium, a bumble link.

The page runs in chromium with a shim for navigator.bluetooth; each call reaches a bumble central (central.py)
that talks over bumble's virtual link to a GATT peripheral (the gateway's BLE side). Everything runs in one
asyncio loop: Playwright's async API and bumble share it, so there is no thread juggling.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import http.server
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
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
from tests.support import launch_chromium, loopback_http

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "client"
SHIM = Path(__file__).with_name("webbluetooth_shim.js")
ARTIFACTS = ROOT / "test-artifacts"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def static_site(directory: Path = CLIENT_DIR) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 and a free port; yields the base URL."""
    handler = functools.partial(_Quiet, directory=str(directory))
    with loopback_http(handler, "client-static") as url:
        yield f"{url}/"


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


class Site:
    """client/ on loopback and one chromium for the whole session; tests run their coroutines on its loop.

    One browser (a fresh context per test) saves a chromium start per test; one loop holds Playwright's async API
    and, in stand-in tests, bumble too.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="client-tests-loop", daemon=True)
        self._pw: Any = None
        self.browser: Any = None

    def start(self) -> Site:
        """Start the loop thread and chromium."""
        from playwright.async_api import async_playwright

        self._thread.start()
        self._pw = self.run(async_playwright().start(), 60)
        self.browser = self.run(launch_chromium(self._pw.chromium), 60)
        return self

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 180.0) -> Any:
        """Run `coro` on the session's loop and wait for it (cancelled if it takes longer than `timeout`)."""
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise

    def close(self) -> None:
        """Close chromium and Playwright, stop the loop."""
        try:
            if self.browser is not None:
                self.run(self.browser.close(), 30)
            if self._pw is not None:
                self.run(self._pw.stop(), 30)
        finally:
            if self._thread.is_alive():
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(10)
            if not self._thread.is_alive():
                self.loop.close()

    @contextlib.asynccontextmanager
    async def page(self, central: Central | None = None) -> AsyncIterator[Browser]:
        """A phone-sized page on the site; with a central, navigator.bluetooth is the shim wired to it."""
        context = await self.browser.new_context(
            viewport={"width": 412, "height": 915},
            device_scale_factor=1,
            is_mobile=True,
            has_touch=True,
        )
        try:
            await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=self.url.rstrip("/"))
            page = await context.new_page()
            out = Browser(page)
            page.on("console", lambda msg: out.console.append(f"{msg.type}: {msg.text}"))
            page.on("pageerror", lambda err: out.console.append(f"pageerror: {err}"))
            if central is not None:
                await page.expose_function("__ohmBle", central.handle)
                await page.add_init_script(path=str(SHIM))
                central.page_call = page.evaluate
            await page.goto(self.url)
            await page.wait_for_selector("body[data-ready='1']", state="attached", timeout=10000)
            yield out
        finally:
            if central is not None:
                central.page_call = None
            await context.close()


async def screenshot(page: Any, name: str) -> None:
    """Full-page screenshot into test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / name), full_page=True)
