"""The Ohm request channel: chunks -> messages -> handshake or sealed request -> forwarded REST call -> reply.

Every method runs as an engine task (one thread), so the per-connection state needs no lock. HTTP goes
to a worker through `offload`; its reply comes back as another task.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .chunks import Reassembler, TooLarge, split
from .forward import Forwarder, ForwardError, Reply
from .lockout import Lockout
from .session import GatewaySession, SessionError
from .window import WindowState

log = logging.getLogger("ohm.ble")

Offload = Callable[[Callable[[], Any], Callable[[Any], None]], None]


@dataclass
class Conn:
    """Per-connection state: the message being assembled, the session, the request in flight."""

    reasm: Reassembler = field(default_factory=Reassembler)
    session: GatewaySession | None = None
    busy: int | None = None


def error(status: int, code: str, detail: str = "") -> dict[str, Any]:
    """An Ohm channel error object."""
    out: dict[str, Any] = {"status": status, "error": code}
    if detail:
        out["detail"] = detail
    return out


class OhmChannel:
    """The gateway end of the Ohm channel for every connection."""

    def __init__(
        self,
        *,
        pop: str,
        forwarder: Forwarder,
        offload: Offload,
        send: Callable[[str, list[bytes]], None],
        mtu: Callable[[str], int],
        window: Callable[[], WindowState],
        info: Callable[[], dict[str, Any]],
        lockout: Lockout | None = None,
    ) -> None:
        self.pop = pop
        self.forwarder = forwarder
        self.offload = offload
        self._send = send
        self.mtu = mtu
        self.window = window
        self.info = info
        self.lockout = lockout or Lockout()
        self.conns: dict[str, Conn] = {}
        self.counts = {"requests": 0, "bad_pop": 0, "framing_errors": 0, "handshakes": 0}

    # ---- connection events --------------------------------------------------------------

    def connect(self, conn: str) -> None:
        """A central connected."""
        self.conns[conn] = Conn()

    def disconnect(self, conn: str) -> None:
        """Drop everything of a connection; a reply still in the works is discarded when it arrives."""
        state = self.conns.pop(conn, None)
        if state is not None and (state.busy is not None or state.reasm.assembling is not None):
            log.info("BLE %s went away mid-request; its state is dropped", conn)

    # ---- incoming -----------------------------------------------------------------------

    def on_chunk(self, conn: str, chunk: bytes, now: float) -> None:
        """One value written to rx."""
        state = self.conns.setdefault(conn, Conn())
        got = state.reasm.feed(chunk)
        if got.error is not None:
            self.counts["framing_errors"] += 1
            self.reply_plain(conn, got.req, error(got.status or 400, got.error, got.detail))
            return
        if got.message is None:
            return
        req = got.req
        if state.busy is not None:
            self.reply_plain(conn, req, error(409, "busy", f"request {state.busy} is still being answered"))
            return
        try:
            message = json.loads(got.message)
        except (ValueError, UnicodeDecodeError):
            message = None
        if not isinstance(message, dict):
            self.reply_plain(conn, req, error(400, "bad_json", "a message is one UTF-8 JSON object"))
            return
        op = message.get("op")
        if op == "hello":
            self._hello(conn, state, req, message, now)
        elif op == "confirm":
            self._confirm(conn, state, req, message, now)
        elif "box" in message:
            self._sealed(conn, state, req, message)
        else:
            code = "no_session" if state.session is None or not state.session.ready else "not_sealed"
            self.reply_plain(conn, req, error(401 if code == "no_session" else 400, code, "do the hello first"))

    def _hello(self, conn: str, state: Conn, req: int, message: dict[str, Any], now: float) -> None:
        state.session = None  # a new hello starts over
        wait = self.lockout.retry_in(now)
        if wait:
            self.reply_plain(conn, req, {**error(429, "locked", "too many wrong codes"), "retry_in_s": wait})
            return
        if not self.window().open:
            self.reply_plain(conn, req, error(403, "window_closed", "press the button on the gateway first"))
            return
        if message.get("v") != 1:
            self.reply_plain(conn, req, error(400, "bad_hello", "protocol version 1 only"))
            return
        try:
            session = GatewaySession(message.get("pub"), self.pop)
        except SessionError as exc:
            self.reply_plain(conn, req, error(400, "bad_hello", str(exc)))
            return
        state.session = session
        self.reply_plain(conn, req, session.hello_reply())

    def _confirm(self, conn: str, state: Conn, req: int, message: dict[str, Any], now: float) -> None:
        session = state.session
        if session is None or session.ready:
            self.reply_plain(conn, req, error(401, "no_session", "confirm follows a hello"))
            return
        try:
            ready = session.confirm(req, message)
        except SessionError:
            state.session = None
            self.counts["bad_pop"] += 1
            self.lockout.failed(now)
            locked = self.lockout.retry_in(now)
            log.warning("BLE %s: wrong PoP%s", conn, f"; handshakes refused for {locked} s" if locked else "")
            self.reply_plain(conn, req, error(401, "bad_pop", "the code does not match the label"))
            return
        self.counts["handshakes"] += 1
        log.info("BLE %s: session established", conn)
        self._emit(conn, req, ready)

    def _sealed(self, conn: str, state: Conn, req: int, message: dict[str, Any]) -> None:
        session = state.session
        if session is None or not session.ready:
            self.reply_plain(conn, req, error(401, "no_session", "do the hello first"))
            return
        try:
            inner = session.box.open(req, message.get("box"))
        except SessionError as exc:
            self.reply_plain(conn, req, error(400, "bad_box", str(exc)))
            return
        if not isinstance(inner, dict):
            self.reply_sealed(conn, req, error(400, "bad_request", "a request is a JSON object"))
            return
        self.counts["requests"] += 1
        op = inner.get("op")
        if op == "info":
            self.reply_sealed(conn, req, {"status": 200, "body": self.info()})
        elif op == "pair":
            self._work(conn, state, req, lambda: Reply(200, {"admin_token": self.forwarder.admin_token()}))
        elif op == "wifi_scan":
            self._work(conn, state, req, lambda: self.forwarder.call("POST", "/api/wifi/scan", {}))
        elif op == "wifi_connect":
            ssid, password = inner.get("ssid"), inner.get("password", "")
            if not isinstance(ssid, str) or not 0 < len(ssid.encode()) <= 32 or not isinstance(password, str):
                self.reply_sealed(conn, req, error(400, "bad_request", "ssid (1-32 bytes) and password are text"))
                return
            body = {"ssid": ssid, "password": password}
            self._work(conn, state, req, lambda: self.forwarder.call("POST", "/api/wifi/connect", body))
        elif op is None and "path" in inner:
            method = inner.get("method", "GET")
            path, body = inner.get("path"), inner.get("body")
            self._work(conn, state, req, lambda: self.forwarder.call(method, path, body))
        else:
            self.reply_sealed(conn, req, error(400, "unknown_op", f"unknown op {op!r}"))

    def _work(self, conn: str, state: Conn, req: int, fn: Callable[[], Reply]) -> None:
        state.busy = req
        session = state.session

        def then(outcome: Any) -> None:
            current = self.conns.get(conn)
            if current is None or current.session is not session:
                log.debug("BLE %s: reply to %d dropped (connection or session gone)", conn, req)
                return
            current.busy = None
            if outcome.ok:
                reply: Reply = outcome.value
                self.reply_sealed(conn, req, {"status": reply.status, "body": reply.body})
            elif isinstance(outcome.error, ForwardError):
                self.reply_sealed(conn, req, outcome.error.reply())
            else:
                log.warning("BLE request failed: %s", outcome.error.__class__.__name__)
                self.reply_sealed(conn, req, error(500, "internal", "the request failed inside the gateway"))

        self.offload(fn, then)

    # ---- outgoing -----------------------------------------------------------------------

    def reply_plain(self, conn: str, req: int, obj: dict[str, Any]) -> None:
        """Send a plaintext message (handshake and framing errors)."""
        self._emit(conn, req, obj)

    def reply_sealed(self, conn: str, req: int, obj: dict[str, Any]) -> None:
        """Send a sealed message over the connection's session."""
        state = self.conns.get(conn)
        if state is None or state.session is None or not state.session.ready:
            return
        self._emit(conn, req, state.session.box.seal(req, obj), sealer=state.session)

    def _emit(self, conn: str, req: int, obj: dict[str, Any], sealer: GatewaySession | None = None) -> None:
        data = json.dumps(obj, separators=(",", ":")).encode()
        mtu = self.mtu(conn)
        try:
            chunks = split(req, data, mtu)
        except TooLarge:
            small = error(413, "response_too_large", f"the reply does not fit at MTU {mtu}; ask for a larger MTU")
            chunks = split(req, json.dumps(sealer.box.seal(req, small) if sealer else small).encode(), mtu)
        self._send(conn, chunks)
