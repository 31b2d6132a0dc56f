"""Live dashboard values over WebSocket: one frame a second for every authenticated browser.

waitress has no WebSocket, so a `websockets` asyncio server runs on its own thread and port
(`api.ws_port`, same host as the API). Browsers cannot set headers on a WebSocket, so the
first message is `{"token": "..."}`; a wrong one closes with 4401 and counts against the same
failure limiter as the HTTP API. One loop builds the frame once a second (only while someone
listens) and writes the same text to every client; a client whose unsent data passes
`max_buffer` is dropped, never buffered without bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from .limiter import FailureLimiter
from .tokens import Tokens

log = logging.getLogger("ohm.api.live")

WS_PATH = "/live"
CLOSE_AUTH = 4401  # wrong or missing token (like HTTP 401)
CLOSE_LIMITED = 4429  # too many failed logins from this address (like HTTP 429)
CLOSE_BUSY = 1013  # "try again later": the client cap is reached
STALE_FACTOR = 3  # a reading older than 3 poll intervals (+ STALE_GRACE s) is stale
STALE_GRACE = 5.0
ACTION_IDS = 20  # ids of the newest actions in a frame (what the page lists); their text comes from /api/actions


def _num(value: Any) -> Any:
    """A JSON-safe point value: NaN/inf become None, floats are rounded to keep frames small."""
    if isinstance(value, float):
        return round(value, 3) if math.isfinite(value) else None
    return value


def device_status(*, enabled: bool, state: str, snap: Any, age: float | None, interval: float) -> str:
    """online, stale, offline, disabled or waiting (no reading yet) for the device cards."""
    if not enabled:
        return "disabled"
    if snap is None:
        return "offline" if state == "offline" else "waiting"
    if not snap.online:
        return "offline"
    if age is not None and age > STALE_FACTOR * interval + STALE_GRACE:
        return "stale"
    return "online"


class FrameBuilder:
    """Builds the dashboard frame from the bus and the services' in-memory stats (never waits on I/O)."""

    def __init__(self, gateway: Any, notes: Any = None) -> None:
        self.gateway = gateway
        self.notes = notes
        self._actions_rev = 0
        self._audit: Any = None

    def _on_action(self, action: Any) -> None:
        self._actions_rev += 1  # a new entry or a changed result/revert: the page fetches /api/actions again

    def _services(self) -> dict[str, Any]:
        return getattr(self.gateway, "services", None) or {}

    def _actions(self) -> dict[str, Any] | None:
        audit = self._services().get("audit")
        if audit is None:
            return None
        if audit is not self._audit:  # subscribe lazily: the audit service may attach after us, or not at all
            self._audit = audit
            audit.on_record(self._on_action)
        ids = [a["id"] for a in audit.recent(ACTION_IDS)]
        return {"rev": self._actions_rev, "newest": ids[0] if ids else None, "ids": ids, "count": len(audit)}

    def _notifications(self) -> dict[str, Any] | None:
        if self.notes is None:
            return None
        items = self.notes.list()
        return {"count": len(items), "newest": items[-1]["id"] if items else None}

    def _stats(self, name: str) -> dict[str, Any] | None:
        stats = getattr(self._services().get(name), "stats", None)
        return stats() if callable(stats) else None

    def _devices(self, now_mono: float) -> list[dict[str, Any]]:
        svc = self._services().get("devices")
        configs = svc.list() if svc is not None else []
        latest = self.gateway.bus.latest()
        rows = [(c["id"], c) for c in configs]
        known = {c["id"] for c in configs}
        rows += [(d, None) for d in sorted(latest) if d not in known]  # published but not configured (tests, plugins)
        out = []
        for device_id, cfg in rows:
            snap = latest.get(device_id)
            health = (cfg or {}).get("health") or {}
            interval = float((cfg or {}).get("interval") or 5.0)
            age = None if snap is None else round(max(0.0, now_mono - snap.mono), 1)
            status = device_status(
                enabled=bool((cfg or {}).get("enabled", True)),
                state=str(health.get("state", "")),
                snap=snap,
                age=age,
                interval=interval,
            )
            out.append(
                {
                    "id": device_id,
                    "name": (cfg or {}).get("name") or "",
                    "profile": snap.profile if snap is not None and snap.profile else (cfg or {}).get("profile", ""),
                    "status": status,
                    "online": bool(snap is not None and snap.online),
                    "age_s": age,
                    "ts": None if snap is None else snap.ts,
                    "error": (snap.error if snap is not None else None) or health.get("last_error"),
                    "last_ok": health.get("last_ok"),  # wall time of the last good poll (None: never)
                    "points": {}
                    if snap is None
                    else {
                        name: {"v": _num(p.value), "u": p.unit, "q": getattr(p.quality, "value", str(p.quality))}
                        for name, p in snap.points.items()
                    },
                }
            )
        return out

    def build(self, now_mono: float | None = None, now_wall: float | None = None) -> dict[str, Any]:
        """One frame: devices, gateway state, engine lateness, uplink, outbox, action and notification revisions."""
        clock = self.gateway.engine.clock
        now_mono = clock.monotonic() if now_mono is None else now_mono
        now_wall = clock.time() if now_wall is None else now_wall
        engine = self.gateway.engine.stats()
        state = getattr(self.gateway, "state", None)
        return {
            "type": "frame",
            "ts": round(now_wall, 3),
            "gateway": {
                "state": getattr(state, "value", str(state)),
                "name": _name(self.gateway),
            },
            "engine": {
                "state": engine["state"],
                "uptime_s": engine["uptime_s"],
                "queue_depth": engine["queue_depth"],
                "failures": engine["failures"],
                "lateness_ms": engine["lateness_ms"],
            },
            "devices": self._devices(now_mono),
            "uplink": self._stats("uplink"),
            "outbox": self._stats("outbox"),
            "actions": self._actions(),
            "notifications": self._notifications(),
        }


def _name(gateway: Any) -> str:
    from .routes import ApiContext, _gateway_name

    return str(_gateway_name(ApiContext(gateway)))


def token_of(raw: str | bytes) -> str | None:
    """The token in a first message `{"token": "..."}`, or None if the message is anything else."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    token = data.get("token") if isinstance(data, dict) else None
    return token if isinstance(token, str) and token else None


class LiveServer:
    """The WebSocket server thread: authenticates clients and broadcasts `build()` every `interval` s."""

    def __init__(
        self,
        build: Callable[[], dict[str, Any]],
        tokens: Tokens,
        host: str,
        port: int,
        *,
        limiter: FailureLimiter | None = None,
        interval: float = 1.0,
        max_clients: int = 32,
        max_buffer: int = 256 * 1024,
        auth_timeout: float = 5.0,
    ) -> None:
        self.build = build
        self.tokens = tokens
        self.limiter = limiter or FailureLimiter()
        self.interval = interval
        self.max_clients = max_clients
        self.max_buffer = max_buffer
        self.auth_timeout = auth_timeout
        self._host, self._port = host, port
        self._conns: set[ServerConnection] = set()
        self._authed: set[ServerConnection] = set()
        self._ready = threading.Event()
        self._error: OSError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._last: tuple[float, str] | None = None
        self._build_failed = False
        self.counters = {"frames": 0, "accepted": 0, "refused_auth": 0, "refused_busy": 0, "dropped_slow": 0}

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> LiveServer:
        """Bind and serve on a daemon thread; raises OSError if the port cannot be bound."""
        self._thread = threading.Thread(target=self._run, name="ohm-live", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            self._thread.join(2)
            raise self._error
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """Close every connection, stop the server and join the thread."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:
                pass  # the loop has ended already
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("live WebSocket server did not stop within %.1f s", timeout)

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0 in tests)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def stats(self) -> dict[str, Any]:
        """Connected and authenticated clients plus counters."""
        return {"clients": len(self._authed), "connections": len(self._conns), **self.counters}

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        try:
            self._server = await serve(
                self._handler,
                self._host,
                self._port,
                process_request=self._check_path,
                compression=None,  # deflate would compress the same frame once per client; frames are small
                max_size=4096,  # clients only ever send the token
                max_queue=4,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=2,
                server_header=None,
            )
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        ticker = asyncio.create_task(self._tick())
        await self._stopping.wait()
        ticker.cancel()
        self._server.close()  # closes every connection with 1001 going away
        try:
            await asyncio.wait_for(self._server.wait_closed(), 2.5)
        except TimeoutError:
            for ws in list(self._conns):
                ws.transport.abort()

    # ---- connections ------------------------------------------------------------------------

    def _check_path(self, connection: ServerConnection, request: Any) -> Any:
        if request.path.split("?", 1)[0] != WS_PATH:
            return connection.respond(404, f"the live WebSocket is at {WS_PATH}\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        if len(self._conns) >= self.max_clients:
            self.counters["refused_busy"] += 1
            await ws.close(CLOSE_BUSY, f"at most {self.max_clients} live clients")
            return
        self._conns.add(ws)
        try:
            client = str((ws.remote_address or ("?",))[0])
            if self.limiter.retry_after(client) > 0:
                self.counters["refused_auth"] += 1
                await ws.close(CLOSE_LIMITED, "too many failed logins; try later")
                return
            try:
                first = await asyncio.wait_for(ws.recv(), self.auth_timeout)
            except TimeoutError:
                first = ""
            token = token_of(first)
            role = self.tokens.role_of(token) if token else None
            if role is None:
                self.limiter.failed(client)
                self.counters["refused_auth"] += 1
                await ws.close(CLOSE_AUTH, 'send {"token": "<read or admin token>"} first')
                return
            self.counters["accepted"] += 1
            self._authed.add(ws)
            text = self._frame(fresh=False)  # the first frame at once, not up to a second later
            if text is not None:
                broadcast([ws], text)
            async for _ in ws:
                pass  # nothing to say after the token; max_size bounds what a client can send
        except ConnectionClosed:
            pass
        finally:
            self._conns.discard(ws)
            self._authed.discard(ws)

    # ---- broadcast --------------------------------------------------------------------------

    def _frame(self, *, fresh: bool = True) -> str | None:
        """The frame as JSON text (None if building failed); `fresh=False` reuses one under an interval old."""
        now = time.monotonic()
        if not fresh and self._last is not None and now - self._last[0] < self.interval:
            return self._last[1]
        try:
            frame = self.build()
        except Exception:
            if not self._build_failed:  # log once, then quietly until it recovers
                log.exception("live frame could not be built")
            self._build_failed = True
            return None
        if self._build_failed:
            log.info("live frames are built again")
        self._build_failed = False
        frame["clients"] = len(self._authed)
        frame["interval_s"] = self.interval
        text = json.dumps(frame, separators=(",", ":"), allow_nan=False, default=str)
        self._last = (now, text)
        return text

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += self.interval
            await asyncio.sleep(max(0.0, due - loop.time()))
            if loop.time() - due > self.interval:
                due = loop.time()  # the thread was starved: skip the missed ticks, do not burst
            if not self._authed:
                continue  # nobody listens: build nothing
            try:
                self.send(self._frame())
            except Exception:  # the ticker must outlive any one bad frame, or the dashboard freezes for good
                log.exception("live frame could not be sent")

    def send(self, text: str | None) -> None:
        """Write one frame to every authenticated client, dropping those whose unsent data passed max_buffer."""
        if text is None:
            return
        healthy = []
        for ws in list(self._authed):
            if ws.transport.get_write_buffer_size() > self.max_buffer:
                self._authed.discard(ws)
                self.counters["dropped_slow"] += 1
                log.info("live client %s dropped: not reading its frames", ws.remote_address)
                ws.transport.abort()  # a close frame would queue behind the backlog
            else:
                healthy.append(ws)
        broadcast(healthy, text)
        self.counters["frames"] += 1


def start(gateway: Any, tokens: Tokens, limiter: FailureLimiter, notes: Any, host: str) -> LiveServer | None:
    """Start the live server on api.ws_port (0 = off); None when off or the port cannot be bound."""
    port = int(gateway.config.get("api.ws_port", 8081))
    if port == 0:
        log.info("live WebSocket disabled (api.ws_port = 0)")
        return None
    builder = FrameBuilder(gateway, notes)
    try:
        live = LiveServer(builder.build, tokens, host, port, limiter=limiter).start()
    except OSError as exc:
        # The dashboard then shows "disconnected"; the API and harvesting go on.
        log.error("live WebSocket not started: cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        return None
    gateway.services["live"] = live
    log.info("live WebSocket listening on %s:%d%s", host, live.port, WS_PATH)
    return live
