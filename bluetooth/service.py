"""The BLE service: one backend on an asyncio thread, one Engine for all logic, HTTP in engine workers.

BLE callbacks only post engine tasks (never block the BLE loop); engine tasks hand notifications back
to the loop with run_coroutine_threadsafe. Chunks of one connection are sent in order under a lock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from server.engine import Clock, Engine, EngineStopped, TaskClass

from . import improv as iv
from . import pop as popcode
from .backends.base import Backend
from .button import SysfsButton
from .channel import OhmChannel
from .config import Settings
from .forward import Forwarder, ForwardError, Reply
from .gatt import (
    IMPROV_RPC,
    IMPROV_SERVICE,
    IMPROV_SERVICE_DATA_UUID,
    IMPROV_STATE,
    NAME_PREFIX,
    OHM_INFO,
    OHM_RX,
    OHM_TX,
    SERVICES,
    Advert,
)
from .improv_service import ImprovHandler
from .window import Window, WindowState

log = logging.getLogger("ohm.ble")
CLS = TaskClass.PROVISIONING


def short_name(gateway_id: str) -> str:
    """`Ohm-XXXX`: 4 upper-case hex digits of SHA-256 of the gateway id (ids are base32; the name wants hex)."""
    return NAME_PREFIX + hashlib.sha256(gateway_id.encode()).hexdigest()[:4].upper()


def fallback_id() -> str:
    """A stable id from the machine id (or hostname) while the server's is not known."""
    try:
        seed = Path("/etc/machine-id").read_text().strip()
    except OSError:
        seed = socket.gethostname()
    return "local-" + hashlib.sha256(seed.encode()).hexdigest()[:12]


class AsyncioThread:
    """An asyncio loop on its own daemon thread (the BLE stack's home)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="ohm-ble-loop", daemon=True)

    def start(self) -> None:
        """Start the loop thread."""
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Schedule a coroutine from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        """Stop the loop and wait for the thread."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


class BleService:
    """Improv Wi-Fi and the Ohm channel over one GATT server; see the module docstring."""

    def __init__(self, settings: Settings, backend: Backend, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.backend = backend
        self.engine = Engine(clock=clock, workers=4)
        self.pop, created = popcode.load_or_create(settings.data_dir)
        if created:
            log.info("made the BLE proof-of-possession code (show it with `python -m bluetooth pop`)")
        self.forwarder = Forwarder(settings.server_url, settings.data_dir, settings.http_timeout)
        self.window = Window(settings.local_window, on_change=self._window_changed)
        self.gateway_id = settings.gateway_id or ""
        self.aio = AsyncioThread()
        self._send_locks: dict[str, asyncio.Lock] = {}
        self._advertised: bytes | None = None
        self._advert_lock = asyncio.Lock()
        self._polling = False
        self._reading_button = False
        self._server_lost = False
        self._phase = 0  # 0: name + service data, 1: Improv UUID + service data (cycled when both do not fit)
        self.button = (
            SysfsButton(settings.button_pin, settings.gpio_root, settings.button_active_low)
            if settings.button_pin >= 0
            else None
        )
        self.channel = OhmChannel(
            pop=self.pop,
            forwarder=self.forwarder,
            offload=self._offload,
            send=self._send_chunks,
            mtu=self.backend.mtu,
            window=lambda: self.window.state,
            info=self.info,
        )
        self.improv = ImprovHandler(
            forwarder=self.forwarder,
            offload=self._offload,
            notify=self._notify,
            mtu=self.backend.mtu,
            window=lambda: self.window.state,
            dashboard_url=self._dashboard_url,
            device_name=lambda: self.name,
            on_provisioned=self.window.mark_provisioned,
        )
        self.events: list[str] = []  # what happened, for `status` and tests (bounded)

    # ---- identity and advertising ---------------------------------------------------------------

    @property
    def name(self) -> str:
        """The advertised name."""
        return short_name(self.gateway_id or fallback_id())

    def info(self) -> dict[str, Any]:
        """The info characteristic's JSON (kept under 180 bytes)."""
        state = self.window.state
        return {"v": 1, "name": self.name, "window": state.open, "id": self.gateway_id[:40]}

    def advert(self) -> Advert:
        """Name and Improv service data (the Improv service UUID in the scan response)."""
        data = iv.service_data(self.improv.state)
        return Advert(self.name, {IMPROV_SERVICE_DATA_UUID: data}, (IMPROV_SERVICE,))

    def improv_advert(self) -> Advert:
        """Improv service UUID and service data in one advertisement, as Improv 2.x requires (31 bytes: no name)."""
        data = iv.service_data(self.improv.state)
        return Advert("", {IMPROV_SERVICE_DATA_UUID: data}, uuids=(IMPROV_SERVICE,))

    def _cycle(self, now: float) -> None:
        self._phase ^= 1
        self._refresh_advert()

    def _refresh_advert(self) -> None:
        self._on_loop(self._apply_advert(), "advertising")

    async def _apply_advert(self) -> None:
        # Built when applied and one at a time: two updates racing on the loop could leave an older state on air.
        async with self._advert_lock:
            advert = self.improv_advert() if self._phase else self.advert()
            payload = advert.payload()
            if payload != self._advertised:
                self._advertised = payload
                await self.backend.set_advert(advert)

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self, *, id_timeout: float = 3.0) -> None:
        """Learn the gateway id, start the BLE backend and the engine (returns once advertising)."""
        if not self.gateway_id:
            self._fetch_id(id_timeout)
        self.aio.start()
        advert = self.advert()
        self._advertised = advert.payload()
        self.aio.run(self.backend.start(SERVICES, advert, self)).result(30)
        log.info("BLE %s backend advertising as %s", self.backend.name, self.name)
        self.engine.every(self.settings.poll_interval, self._poll, kind="ble.poll", name="ble.poll", cls=CLS)
        if self.settings.advert_cycle > 0 and self.backend.cycles_adverts:
            self.engine.every(self.settings.advert_cycle, self._cycle, kind="ble.advert", name="ble.advert", cls=CLS)
        if self.button is not None:
            self.engine.every(0.1, self._poll_button, kind="ble.button", name="ble.button", cls=CLS)
        self.engine.start_thread("ohm-ble-engine")

    def stop(self) -> None:
        """Stop the engine, the backend and the loop (each bounded in time)."""
        self.engine.stop()
        self.engine.wait_stopped(5)
        try:
            self.aio.run(self.backend.stop()).result(10)
        except Exception as exc:  # noqa: BLE001 - shutting down: report and go on
            log.warning("BLE backend stop: %s", exc)
        self.aio.stop()

    def _fetch_id(self, timeout: float) -> None:
        forwarder = Forwarder(self.settings.server_url, self.settings.data_dir, timeout)
        try:
            reply = forwarder.call("GET", "/api/crypto")
        except ForwardError as exc:
            log.warning("gateway id unknown (%s); advertising %s until the server answers", exc.detail, self.name)
            return
        self._take_id(reply)

    def _take_id(self, reply: Reply) -> bool:
        if reply.status == 200 and isinstance(reply.body, dict) and isinstance(reply.body.get("id"), str):
            self.gateway_id = reply.body["id"]
            return True
        return False

    # ---- engine tasks ----------------------------------------------------------------------------

    def _offload(self, fn: Callable[[], Any], then: Callable[[Any], None]) -> None:
        self.engine.offload(fn, then=then, kind="ble.http", cls=CLS)

    def _post(self, fn: Callable[[float], None], kind: str) -> None:
        try:
            self.engine.call_soon(fn, kind=kind, cls=CLS)
        except EngineStopped:
            log.debug("BLE event after stop dropped (%s)", kind)

    def _poll(self, now: float) -> None:
        self.window.tick(now)
        if self._polling:
            return  # the last poll still waits for the server: never pile blocking calls into the workers
        self._polling = True

        def fetch() -> tuple[Reply, Reply | None]:
            crypto = None if self.gateway_id else self.forwarder.call("GET", "/api/crypto")
            return self.forwarder.call("GET", "/api/provisioning"), crypto

        def then(outcome: Any) -> None:
            self._polling = False
            if not outcome.ok:
                self._server_down(outcome.error)
                return
            self._server_up()
            state, crypto = outcome.value
            if crypto is not None and self._take_id(crypto):
                log.info("gateway id known; advertising as %s", self.name)
                self._refresh_advert()
            self.window.from_server(state.status, state.body, self.engine.clock.monotonic())

        self._offload(fetch, then)

    def _server_down(self, error: BaseException) -> None:
        if not self._server_lost:
            self._server_lost = True
            log.warning("server unreachable for the provisioning state (%s); retrying", getattr(error, "detail", error))

    def _server_up(self) -> None:
        if self._server_lost:
            self._server_lost = False
            log.info("server reachable again")

    def _poll_button(self, now: float) -> None:
        button = self.button
        assert button is not None
        if self._reading_button:
            return
        self._reading_button = True

        def then(outcome: Any) -> None:
            self._reading_button = False
            if outcome.ok and outcome.value:
                self.press(self.engine.clock.monotonic())

        self.engine.offload(button.poll, then=then, kind="ble.button", cls=CLS)

    def press(self, now: float) -> None:
        """The button was pressed: open the window (through the server when it has the API)."""
        self._event("button pressed: opening the provisioning window")
        if self.window.mode == "local":
            self.window.open_local(now)
            return

        def then(outcome: Any) -> None:
            if outcome.ok and outcome.value.status == 404:
                self.window.from_server(404, None, self.engine.clock.monotonic())
                self.window.open_local(self.engine.clock.monotonic())
            elif not outcome.ok or outcome.value.status >= 300:
                log.warning(
                    "could not open the window through the server: %s",
                    outcome.error if not outcome.ok else f"HTTP {outcome.value.status}",
                )
            self.engine.call_soon(self._poll, kind="ble.poll", cls=CLS)

        self._offload(lambda: self.forwarder.call("POST", "/api/provisioning/window", {}), then)

    def _window_changed(self, state: WindowState) -> None:
        self._event(f"window {'open' if state.open else 'closed'} ({state.source})")
        self.improv.window_changed(state)
        self._refresh_advert()

    def _event(self, text: str) -> None:
        log.info("BLE: %s", text)
        self.events.append(text)
        del self.events[:-100]

    def _dashboard_url(self, reply: Reply | None) -> str:
        if self.settings.dashboard_url:
            return self.settings.dashboard_url
        port = urlsplit(self.settings.server_url).port or 8080
        body = reply.body if reply is not None and isinstance(reply.body, dict) else {}
        if isinstance(body.get("url"), str):
            return body["url"]
        for key in ("ip", "address", "ip4"):
            if isinstance(body.get(key), str) and body[key]:
                return f"http://{body[key]}:{port}/"
        return f"http://{socket.gethostname()}.local:{port}/"

    # ---- backend callbacks (on the asyncio loop: post and return) --------------------------------

    def on_connect(self, conn: str) -> None:
        """A central connected."""
        log.info("BLE %s connected", conn)
        self._post(lambda now: self.channel.connect(conn), "ble.connect")

    def on_disconnect(self, conn: str) -> None:
        """A central went away."""
        log.info("BLE %s disconnected", conn)
        self._send_locks.pop(conn, None)

        def drop(now: float) -> None:
            self.channel.disconnect(conn)
            self.improv.disconnect(conn)

        self._post(drop, "ble.disconnect")

    def on_mtu(self, conn: str, mtu: int) -> None:
        """The MTU changed (the backend answers mtu() itself)."""
        log.debug("BLE %s MTU %d", conn, mtu)

    def on_write(self, conn: str, char: str, value: bytes) -> None:
        """A write: post it to the engine."""
        if char == OHM_RX:
            self._post(lambda now: self.channel.on_chunk(conn, value, now), "ble.ohm")
        elif char == IMPROV_RPC:
            self._post(lambda now: self.improv.on_write(conn, value), "ble.improv")

    def on_read(self, conn: str, char: str) -> bytes:
        """A read: answered from current values at once."""
        if char == OHM_INFO:
            # The reader's MTU too: Web Bluetooth cannot ask for it, and the page sizes its chunks by it.
            info = {**self.info(), "mtu": self.backend.mtu(conn)}
            return json.dumps(info, separators=(",", ":")).encode()
        return self.improv.read(char)

    # ---- towards the BLE loop --------------------------------------------------------------------

    def _on_loop(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        def done(fut: concurrent.futures.Future[Any]) -> None:
            exc = fut.exception()
            if exc is not None:
                log.warning("BLE %s failed: %s", what, exc)

        try:
            self.aio.run(coro).add_done_callback(done)
        except RuntimeError:  # the loop is closed: shutting down
            coro.close()

    def _notify(self, conn: str | None, char: str, value: bytes) -> None:
        self._on_loop(self.backend.notify(conn, char, value), "notify")
        if char == IMPROV_STATE:
            self._refresh_advert()

    def _send_chunks(self, conn: str, chunks: list[bytes]) -> None:
        async def send() -> None:
            lock = self._send_locks.setdefault(conn, asyncio.Lock())
            async with lock:
                for chunk in chunks:
                    await self.backend.notify(conn, OHM_TX, chunk)

        self._on_loop(send(), "send")
