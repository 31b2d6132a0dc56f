"""Helpers the test packages share (import as `from tests.support import ...`)."""

from __future__ import annotations

import contextlib
import http.server
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Debian's chromium from apt, never a browser Playwright downloads; the same flags in every browser test.
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
CHROMIUM_MISSING = f"{CHROMIUM} is missing (apt-get install chromium; `make test` installs it)"

NOON = 1_699_963_200.0  # 2023-11-14 12:00 UTC: simulator clock at solar noon, readings steady and non-zero


def wait_for(
    cond: Callable[[], Any], timeout: float = 10.0, step: float = 0.02, why: Callable[[], str] | None = None
) -> Any:
    """Poll `cond` until it returns something truthy (returned) or fail after `timeout` s, saying `why()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s" + (f": {why()}" if why else ""))


def chromium_available() -> bool:
    """Debian's chromium is installed (apt)."""
    return shutil.which(CHROMIUM) is not None


def launch_chromium(browser_type: Any) -> Any:
    """Launch headless Debian chromium with Playwright's `pw.chromium` (sync: a Browser; async: an awaitable)."""
    return browser_type.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def api_settings(data_dir: Path, **more: Any) -> dict[str, Any]:
    """Settings for an in-process gateway: API on 127.0.0.1 and a free port, no WebSocket, no mDNS, `more` on top."""
    from server.uplink.broker import free_port

    return {
        "data_dir": data_dir,
        "stats_interval": 0,
        "identity.backend": "software",
        "api.host": "127.0.0.1",
        "api.port": free_port(),
        "api.ws_port": 0,  # the dashboard's WebSocket has its own tests; its fixed default would collide
        "mdns.enabled": False,  # nothing leaves loopback in tests
        **more,
    }


@contextlib.contextmanager
def started_gateway(settings: dict[str, Any], services: list[Any], env: dict[str, str] | None = None) -> Iterator[Any]:
    """A Gateway with `services` started in its engine thread and running; stopped (and waited for) at the end."""
    from server.config import load
    from server.gateway import Gateway

    gw = Gateway(load(None, env=env or {}, overrides=settings), services=services)
    try:
        gw.start()
        gw.engine.start_thread()
        wait_for(lambda: gw.engine.state == "running")
        yield gw
    finally:
        gw.stop()
        gw.engine.wait_stopped(5)


@contextlib.contextmanager
def gateway_pool() -> Iterator[Callable[..., Any]]:
    """Yield `start(settings, services, prepare=None)` -> a Gateway in its engine thread; all stopped at the end.

    `prepare(gateway)` runs before start (to subscribe before the first event); start does not wait for "running".
    """
    from server.config import load
    from server.gateway import Gateway

    made: list[Gateway] = []

    def start(
        settings: dict[str, Any], services: list[Any], prepare: Callable[[Gateway], Any] | None = None
    ) -> Gateway:
        gw = Gateway(load(None, env={}, overrides=settings), services=services)
        if prepare is not None:
            prepare(gw)
        gw.start()
        gw.engine.start_thread()
        made.append(gw)
        return gw

    try:
        yield start
    finally:
        for gw in made:
            gw.stop()
            gw.engine.wait_stopped(5)


@contextlib.contextmanager
def loopback_http(handler: Callable[..., http.server.BaseHTTPRequestHandler], name: str) -> Iterator[str]:
    """Serve `handler` on 127.0.0.1 and a free port from a thread named `name`; yields the base URL (no slash)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
