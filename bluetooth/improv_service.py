"""Improv Wi-Fi over BLE on the gateway: RPC commands against the server, state/error/result values.

Runs as engine tasks like the Ohm channel; Wi-Fi and scans go to the server's REST API in a worker.
"""

from __future__ import annotations

import logging
import platform
import socket
from collections.abc import Callable
from typing import Any

from . import __version__
from . import improv as iv
from .forward import Forwarder, ForwardError, Reply
from .gatt import IMPROV_ERROR, IMPROV_RESULT, IMPROV_STATE
from .window import WindowState

log = logging.getLogger("ohm.ble")

Offload = Callable[[Callable[[], Any], Callable[[Any], None]], None]


class ImprovHandler:
    """Improv state machine; `notify(conn_or_None, char, value)` sends, `mtu(conn)` sizes results."""

    def __init__(
        self,
        *,
        forwarder: Forwarder,
        offload: Offload,
        notify: Callable[[str | None, str, bytes], None],
        mtu: Callable[[str], int],
        window: Callable[[], WindowState],
        dashboard_url: Callable[[Reply | None], str],
        device_name: Callable[[], str],
        on_identify: Callable[[], None] | None = None,
        on_provisioned: Callable[[], None] | None = None,
    ) -> None:
        self.forwarder = forwarder
        self.offload = offload
        self.notify = notify
        self.mtu = mtu
        self.window = window
        self.dashboard_url = dashboard_url
        self.device_name = device_name
        self.on_identify = on_identify
        self.on_provisioned = on_provisioned
        self.hostname = socket.gethostname()
        self.error = iv.Error.NONE
        self.result = b""
        self._provisioning = False
        self._provisioned = False
        self._window_seen = window().open
        self._assemblers: dict[str, iv.RpcAssembler] = {}

    # ---- values ----------------------------------------------------------------------------

    @property
    def state(self) -> iv.State:
        """The Improv state from the window and what happened on this connection."""
        if self._provisioning:
            return iv.State.PROVISIONING
        if self._provisioned:
            return iv.State.PROVISIONED
        return iv.State.AUTHORIZED if self.window().open else iv.State.AUTHORIZATION_REQUIRED

    def read(self, char: str) -> bytes:
        """Value of a readable Improv characteristic."""
        if char == IMPROV_STATE:
            return bytes([self.state])
        if char == IMPROV_ERROR:
            return bytes([self.error])
        if char == IMPROV_RESULT:
            return self.result
        return bytes([iv.CAPABILITIES])

    def window_changed(self, state: WindowState) -> None:
        """The window opened or closed: a new window starts a new provisioning round."""
        if state.open != self._window_seen:
            self._window_seen = state.open
            self._provisioned = False
        self.notify(None, IMPROV_STATE, bytes([self.state]))

    def disconnect(self, conn: str) -> None:
        """Forget a connection's partial frame."""
        self._assemblers.pop(conn, None)

    def _set_error(self, error: iv.Error) -> None:
        self.error = error
        self.notify(None, IMPROV_ERROR, bytes([error]))

    def _send_result(self, conn: str, command: int, strings: list[str]) -> None:
        # The value holds the whole frame (at most 255 data bytes: trailing entries dropped to fit).
        # A notification holds at most MTU-3 bytes: a longer frame is cut there, and a client that sees
        # a frame that does not check out reads the characteristic (a long read) for all of it.
        self.result = iv.fit_result(command, strings, 258)
        self.notify(conn, IMPROV_RESULT, self.result[: max(1, self.mtu(conn) - 3)])

    # ---- commands ----------------------------------------------------------------------

    def on_write(self, conn: str, value: bytes) -> None:
        """One write to the RPC command characteristic."""
        assembler = self._assemblers.setdefault(conn, iv.RpcAssembler())
        try:
            rpc = assembler.feed(value)
        except iv.FrameError as exc:
            log.info("Improv from %s: invalid RPC (%s)", conn, exc)
            self._set_error(iv.Error.INVALID_RPC)
            return
        if rpc is None:
            return
        try:
            command = iv.Command(rpc.command)
        except ValueError:
            self._set_error(iv.Error.UNKNOWN_RPC)
            return
        if command in iv.NEEDS_AUTH and not (command in (iv.Command.HOSTNAME, iv.Command.DEVICE_NAME) and not rpc.data):
            if not self.window().open:
                self._set_error(iv.Error.NOT_AUTHORIZED)
                return
        self._set_error(iv.Error.NONE)
        try:
            self._dispatch(conn, command, rpc.data)
        except iv.FrameError as exc:
            log.info("Improv from %s: invalid %s (%s)", conn, command.name, exc)
            self._set_error(iv.Error.INVALID_RPC)

    def _dispatch(self, conn: str, command: iv.Command, data: bytes) -> None:
        if command == iv.Command.WIFI_SETTINGS:
            self._wifi(conn, *iv.parse_wifi(data))
        elif command == iv.Command.IDENTIFY:
            log.info("Improv: identify requested by %s", conn)
            if self.on_identify is not None:
                self.on_identify()
        elif command == iv.Command.DEVICE_INFO:
            info = ["Ohm gateway", __version__, platform.machine() or "unknown", self.device_name()]
            self._send_result(conn, command, info)
        elif command == iv.Command.SCAN_NETWORKS:
            self._scan(conn)
        elif command == iv.Command.HOSTNAME:
            if data:
                name = iv.decode_strings(data)
                if len(name) != 1 or not iv.valid_hostname(name[0]):
                    self._set_error(iv.Error.BAD_HOSTNAME)
                    return
                self.hostname = name[0]
                log.info("Improv: hostname set to %s", self.hostname)
            self._send_result(conn, command, [self.hostname])
        elif command == iv.Command.DEVICE_NAME:
            name = None
            if data:
                strings = iv.decode_strings(data)
                if len(strings) != 1 or not strings[0].strip():
                    raise iv.FrameError("device name must be one non-empty string")
                name = strings[0].strip()
            self._device_name(conn, name)

    def _device_name(self, conn: str, name: str | None) -> None:
        """The gateway's human name is the server's `name` setting: read it, or set it (PATCH /api/settings)."""

        def call() -> Reply:
            if name is not None:
                changed = self.forwarder.call("PATCH", "/api/settings", {"name": name})
                if not 200 <= changed.status < 300:
                    return changed
            return self.forwarder.call("GET", "/api/name")

        def then(outcome: Any) -> None:
            reply = outcome.value if outcome.ok else None
            if reply is not None and reply.status == 200 and isinstance(reply.body, dict):
                current = reply.body.get("name")
                if isinstance(current, str) and current:
                    if name is not None:
                        log.info("Improv: device name set to %s", current)
                    self._send_result(conn, iv.Command.DEVICE_NAME, [current])
                    return
            if name is None and (reply is None or reply.status == 404):
                self._send_result(conn, iv.Command.DEVICE_NAME, [self.device_name()])  # a server without names
                return
            log.warning("Improv: device name not %s (%s)", "set" if name else "read", _why(outcome))
            self._set_error(iv.Error.UNKNOWN)

        self.offload(call, then)

    def _wifi(self, conn: str, ssid: str, password: str) -> None:
        self._provisioning = True
        self.notify(None, IMPROV_STATE, bytes([self.state]))
        log.info("Improv: joining Wi-Fi %r for %s", ssid, conn)

        def then(outcome: Any) -> None:
            self._provisioning = False
            reply = outcome.value if outcome.ok else None
            if reply is not None and 200 <= reply.status < 300 and not _failed(reply.body):
                self._provisioned = True
                self.notify(None, IMPROV_STATE, bytes([self.state]))
                self._send_result(conn, iv.Command.WIFI_SETTINGS, [self.dashboard_url(reply)])
                log.info("Improv: Wi-Fi %r joined", ssid)
                if self.on_provisioned is not None:
                    self.on_provisioned()
                return
            why = (
                outcome.error.detail
                if isinstance(outcome.error, ForwardError)
                else f"HTTP {getattr(reply, 'status', '?')}"
            )
            log.warning("Improv: joining Wi-Fi %r failed (%s)", ssid, why)
            self.error = iv.Error.UNABLE_TO_CONNECT
            self.notify(None, IMPROV_ERROR, bytes([self.error]))
            self.notify(None, IMPROV_STATE, bytes([self.state]))

        self.offload(
            lambda: self.forwarder.call("POST", "/api/wifi/connect", {"ssid": ssid, "password": password}), then
        )

    def _scan(self, conn: str) -> None:
        def then(outcome: Any) -> None:
            reply = outcome.value if outcome.ok else None
            if reply is None or not 200 <= reply.status < 300:
                self._set_error(iv.Error.UNKNOWN)
                return
            self._send_result(conn, iv.Command.SCAN_NETWORKS, scan_strings(reply.body))

        self.offload(lambda: self.forwarder.call("POST", "/api/wifi/scan", {}), then)


def _why(outcome: Any) -> str:
    if not outcome.ok:
        return getattr(outcome.error, "detail", type(outcome.error).__name__)
    return f"HTTP {outcome.value.status}"


def _failed(body: Any) -> bool:
    return isinstance(body, dict) and (body.get("connected") is False or body.get("ok") is False)


def scan_strings(body: Any) -> list[str]:
    """Improv scan result strings (SSID, RSSI, auth) from the server's scan answer, strongest first."""
    nets = body.get("networks", body.get("results", [])) if isinstance(body, dict) else body
    out: list[tuple[int, list[str]]] = []
    for net in nets if isinstance(nets, list) else []:
        if not isinstance(net, dict) or not isinstance(net.get("ssid"), str) or not net["ssid"]:
            continue
        rssi = net.get("rssi", net.get("signal_dbm"))
        if not isinstance(rssi, int | float):
            signal = net.get("signal", net.get("strength"))  # NetworkManager gives 0-100 %
            rssi = int(signal) // 2 - 100 if isinstance(signal, int | float) else -100
        security = str(net.get("auth", net.get("security", "")) or "").upper()
        # Improv names: WEP, WPA, WPA2, WPA3, ... and NO for an open network.
        auth = "NO" if security in ("", "OPEN", "NONE", "NO") else security
        out.append((int(rssi), [net["ssid"], str(int(rssi)), auth or "NO"]))
    out.sort(key=lambda item: -item[0])
    return [s for _, strings in out for s in strings]
