"""A small NetworkManager client over the system D-Bus (dbus-fast): scan, connect, forget, status.

Every public method blocks: it runs its own short asyncio loop with one bus connection and closes it.
Callers put them on a worker (engine.offload on the "wifi" lane), never on the engine thread. A
password goes to NetworkManager only; it is never logged, stored here or returned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from dbus_fast import BusType, DBusError, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

log = logging.getLogger("ohm.wifi")
T = TypeVar("T")

NM = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
SETTINGS_PATH = "/org/freedesktop/NetworkManager/Settings"
DEVICE = NM + ".Device"
WIRELESS = NM + ".Device.Wireless"
AP = NM + ".AccessPoint"
ACTIVE = NM + ".Connection.Active"
CONNECTION = NM + ".Settings.Connection"
PROPS = "org.freedesktop.DBus.Properties"
DEVICE_TYPE_WIFI = 2
CALL_TIMEOUT = 10.0  # s for one D-Bus round trip
SCAN_WAIT = 6.0  # s a scan may take before we list what is known
NM_STATES = {
    0: "unknown",
    10: "asleep",
    20: "disconnected",
    30: "disconnecting",
    40: "connecting",
    50: "connected_local",
    60: "connected_site",
    70: "connected_global",
}
DEVICE_STATES = {
    0: "unknown",
    10: "unmanaged",
    20: "unavailable",
    30: "disconnected",
    40: "prepare",
    50: "config",
    60: "need_auth",
    70: "ip_config",
    80: "ip_check",
    90: "secondaries",
    100: "activated",
    110: "deactivating",
    120: "failed",
}
ACTIVE_ACTIVATED, ACTIVE_DEACTIVATED = 2, 4
SEC_WEP = 0x1 | 0x2 | 0x10 | 0x20
SEC_PSK, SEC_8021X, SEC_SAE = 0x100, 0x200, 0x400
FLAG_PRIVACY = 0x1


class WifiUnavailable(RuntimeError):
    """NetworkManager (or a Wi-Fi device) is not there: the API answers 503 with this reason."""


class WifiRefused(ValueError):
    """NetworkManager refused a request (bad settings, unknown network): the API answers 4xx."""


class WifiNotFound(LookupError):
    """No such network (not in range, or no saved connection to forget)."""


@dataclass(frozen=True)
class AccessPoint:
    """One network seen in a scan (the strongest access point of its SSID)."""

    ssid: str
    signal: int  # percent
    security: str  # open, wep, wpa, wpa2, wpa3, enterprise
    frequency: int  # MHz

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def security_of(flags: int, wpa: int, rsn: int) -> str:
    """A human name for an access point's security flags (NM80211ApFlags / NM80211ApSecurityFlags)."""
    both = wpa | rsn
    if both & SEC_8021X:
        return "enterprise"
    if rsn & SEC_SAE:
        return "wpa3"
    if rsn & SEC_PSK:
        return "wpa2"
    if wpa & SEC_PSK:
        return "wpa"
    if both & SEC_WEP or flags & FLAG_PRIVACY:
        return "wep"
    return "open"


def check_ssid(ssid: Any) -> str:
    """An SSID is 1-32 bytes of UTF-8."""
    if not isinstance(ssid, str) or not ssid:
        raise WifiRefused("ssid: must be non-empty text")
    if len(ssid.encode("utf-8")) > 32:
        raise WifiRefused("ssid: at most 32 bytes")
    return ssid


def check_password(password: Any) -> str:
    """A WPA passphrase is 8-63 printable ASCII characters or 64 hex digits; empty means an open network."""
    if password is None or password == "":
        return ""
    if not isinstance(password, str):
        raise WifiRefused("password: must be text")
    if len(password) == 64 and all(c in "0123456789abcdefABCDEF" for c in password):
        return password
    if not 8 <= len(password) <= 63 or not all(32 <= ord(c) < 127 for c in password):
        raise WifiRefused("password: must be 8-63 printable ASCII characters (or 64 hex digits)")
    return password


def _reason(exc: DBusError) -> str:
    """The last line of a D-Bus error, short (a service may send a whole traceback)."""
    text = (exc.text or exc.type or "error").strip().splitlines()
    return (text[-1] if text else exc.type)[:200]


def _value(v: Any) -> Any:
    """Unwrap dbus-fast Variants, recursively."""
    if isinstance(v, Variant):
        return _value(v.value)
    if isinstance(v, dict):
        return {k: _value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_value(x) for x in v]
    return v


class NetworkManager:
    """Blocking client; `bus_address` None means the standard system bus ($DBUS_SYSTEM_BUS_ADDRESS or the socket)."""

    def __init__(self, bus_address: str | None = None, *, connect_timeout: float = 30.0) -> None:
        self.bus_address = bus_address or None
        self.connect_timeout = connect_timeout

    # ---- the public, blocking operations ------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Overall state, the Wi-Fi device's state, the SSID it is on, its signal and IPv4 address."""
        return self._run(self._status)

    def scan(self) -> list[AccessPoint]:
        """Ask for a fresh scan (bounded wait), then list networks, strongest first."""
        return self._run(self._scan)

    def connect(self, ssid: str, password: str = "", *, hidden: bool = False) -> dict[str, Any]:
        """Join a network (replacing saved connections of that SSID); returns the status once it is up."""
        ssid, password = check_ssid(ssid), check_password(password)
        return self._run(lambda bus: self._connect(bus, ssid, password, hidden))

    def forget(self, ssid: str) -> int:
        """Delete every saved connection of an SSID; returns how many (WifiNotFound if none)."""
        ssid = check_ssid(ssid)
        return self._run(lambda bus: self._forget(bus, ssid))

    def known_ssids(self) -> list[str]:
        """SSIDs of the saved Wi-Fi connections."""
        return self._run(self._known)

    # ---- plumbing ---------------------------------------------------------------------

    def _run(self, op: Callable[[MessageBus], Awaitable[T]]) -> T:
        return asyncio.run(self._with_bus(op))

    async def _with_bus(self, op: Callable[[MessageBus], Awaitable[T]]) -> T:
        try:
            bus = await asyncio.wait_for(
                MessageBus(bus_address=self.bus_address, bus_type=BusType.SYSTEM).connect(), CALL_TIMEOUT
            )
        except (OSError, TimeoutError, ValueError, DBusError) as exc:
            raise WifiUnavailable(f"no system D-Bus: {exc}") from None
        try:
            if not await self._has_nm(bus):
                raise WifiUnavailable("NetworkManager is not running on the system bus")
            return await op(bus)
        finally:
            bus.disconnect()

    async def _call(
        self,
        bus: MessageBus,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
    ) -> list[Any]:
        msg = Message(
            destination=NM if interface != "org.freedesktop.DBus" else "org.freedesktop.DBus",
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body or [],
        )
        reply = await asyncio.wait_for(bus.call(msg), CALL_TIMEOUT)
        if reply is None:
            return []
        if reply.message_type == MessageType.ERROR:
            raise DBusError(reply.error_name or "error", (reply.body or [""])[0] if reply.body else "")
        return list(reply.body)

    async def _has_nm(self, bus: MessageBus) -> bool:
        msg = Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="NameHasOwner",
            signature="s",
            body=[NM],
        )
        reply = await asyncio.wait_for(bus.call(msg), CALL_TIMEOUT)
        return bool(reply and reply.message_type == MessageType.METHOD_RETURN and reply.body[0])

    async def _prop(self, bus: MessageBus, path: str, interface: str, name: str, default: Any = None) -> Any:
        try:
            (value,) = await self._call(bus, path, PROPS, "Get", "ss", [interface, name])
        except DBusError:
            return default  # an older NetworkManager (or the mock) lacks some properties
        return _value(value)

    async def _props(self, bus: MessageBus, path: str, interface: str) -> dict[str, Any]:
        try:
            (values,) = await self._call(bus, path, PROPS, "GetAll", "s", [interface])
        except DBusError:
            return {}
        return _value(values)

    async def _wifi_device(self, bus: MessageBus) -> str:
        (devices,) = await self._call(bus, NM_PATH, NM, "GetDevices")
        for path in devices:
            if await self._prop(bus, path, DEVICE, "DeviceType") == DEVICE_TYPE_WIFI:
                return path
        raise WifiUnavailable("NetworkManager has no Wi-Fi device")

    async def _access_points(self, bus: MessageBus, device: str) -> dict[str, tuple[str, AccessPoint]]:
        """{ssid: (path, AccessPoint)} keeping the strongest of each SSID; hidden networks left out."""
        (paths,) = await self._call(bus, device, WIRELESS, "GetAllAccessPoints")
        best: dict[str, tuple[str, AccessPoint]] = {}
        for path in paths:
            p = await self._props(bus, path, AP)
            raw = bytes(p.get("Ssid") or b"")
            if not raw:
                continue
            ssid = raw.decode("utf-8", errors="replace")
            sec = security_of(int(p.get("Flags", 0)), int(p.get("WpaFlags", 0)), int(p.get("RsnFlags", 0)))
            ap = AccessPoint(ssid, int(p.get("Strength", 0)), sec, int(p.get("Frequency", 0)))
            if ssid not in best or ap.signal > best[ssid][1].signal:
                best[ssid] = (path, ap)
        return best

    async def _scan(self, bus: MessageBus) -> list[AccessPoint]:
        device = await self._wifi_device(bus)
        before = await self._prop(bus, device, WIRELESS, "LastScan")
        try:
            await self._call(bus, device, WIRELESS, "RequestScan", "a{sv}", [{}])
        except DBusError as exc:
            # NetworkManager refuses a scan right after another one; the list it has is fresh enough.
            log.debug("scan request refused: %s", exc)
        else:
            if before is not None:  # real NetworkManager: wait (bounded) until LastScan moves
                deadline = time.monotonic() + SCAN_WAIT
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.25)
                    if await self._prop(bus, device, WIRELESS, "LastScan") != before:
                        break
        found = await self._access_points(bus, device)
        return sorted((ap for _, ap in found.values()), key=lambda a: (-a.signal, a.ssid))

    async def _status(self, bus: MessageBus) -> dict[str, Any]:
        state = int(await self._prop(bus, NM_PATH, NM, "State", 0))
        out: dict[str, Any] = {
            "state": NM_STATES.get(state, str(state)),
            "device": None,
            "device_state": None,
            "ssid": None,
            "signal": None,
            "ip": None,
        }
        try:
            device = await self._wifi_device(bus)
        except WifiUnavailable:
            return out
        d = await self._props(bus, device, DEVICE)
        out["device"] = d.get("Interface")
        out["device_state"] = DEVICE_STATES.get(int(d.get("State", 0)), str(d.get("State")))
        active = d.get("ActiveConnection") or "/"
        if active != "/":
            a = await self._props(bus, active, ACTIVE)
            ap_path = a.get("SpecificObject") or "/"
            if ap_path != "/":
                p = await self._props(bus, ap_path, AP)
                out["ssid"] = bytes(p.get("Ssid") or b"").decode("utf-8", errors="replace") or None
                out["signal"] = p.get("Strength")
            out["ssid"] = out["ssid"] or a.get("Id")
        ip4 = d.get("Ip4Config") or "/"
        if ip4 != "/":
            data = await self._prop(bus, ip4, NM + ".IP4Config", "AddressData", [])
            if data:
                out["ip"] = data[0].get("address")
        return out

    async def _saved(self, bus: MessageBus) -> list[tuple[str, str]]:
        """(path, ssid) of every saved Wi-Fi connection."""
        (paths,) = await self._call(bus, SETTINGS_PATH, NM + ".Settings", "ListConnections")
        out = []
        for path in paths:
            try:
                (settings,) = await self._call(bus, path, CONNECTION, "GetSettings")
            except DBusError:
                continue  # removed meanwhile
            settings = _value(settings)
            wifi = settings.get("802-11-wireless")
            if settings.get("connection", {}).get("type") == "802-11-wireless" or wifi:
                raw = bytes((wifi or {}).get("ssid") or b"")
                ssid = raw.decode("utf-8", errors="replace") or settings.get("connection", {}).get("id", "")
                out.append((path, ssid))
        return out

    async def _known(self, bus: MessageBus) -> list[str]:
        return [ssid for _, ssid in await self._saved(bus)]

    async def _forget(self, bus: MessageBus, ssid: str) -> int:
        gone = 0
        for path, known in await self._saved(bus):
            if known == ssid:
                await self._call(bus, path, CONNECTION, "Delete")
                gone += 1
        if not gone:
            raise WifiNotFound(f"no saved Wi-Fi connection for {ssid!r}")
        log.info("Wi-Fi connection to %r forgotten", ssid)
        return gone

    async def _connect(self, bus: MessageBus, ssid: str, password: str, hidden: bool) -> dict[str, Any]:
        device = await self._wifi_device(bus)
        found = await self._access_points(bus, device)
        if ssid not in found and not hidden:
            raise WifiNotFound(f"no network {ssid!r} in range (scan again, or send hidden: true)")
        ap_path, ap = found.get(ssid, ("/", None))
        if ap is not None and ap.security == "open" and password:
            raise WifiRefused(f"{ssid!r} is an open network: send no password")
        if ap is not None and ap.security not in ("open",) and not password:
            raise WifiRefused(f"{ssid!r} is secured ({ap.security}): a password is needed")
        if ap is not None and ap.security in ("wep", "enterprise"):
            raise WifiRefused(f"{ssid!r} uses {ap.security}, which this gateway does not set up")
        for path, known in await self._saved(bus):
            if known == ssid:  # a new password replaces the old connection instead of piling up copies
                await self._call(bus, path, CONNECTION, "Delete")
        wireless: dict[str, Variant] = {
            "ssid": Variant("ay", ssid.encode("utf-8")),
            "mode": Variant("s", "infrastructure"),
        }
        if hidden:
            wireless["hidden"] = Variant("b", True)
        conf: dict[str, dict[str, Variant]] = {
            "connection": {
                "type": Variant("s", "802-11-wireless"),
                "id": Variant("s", ssid),
                "autoconnect": Variant("b", True),
            },
            "802-11-wireless": wireless,
            "ipv4": {"method": Variant("s", "auto")},
            "ipv6": {"method": Variant("s", "auto")},
        }
        if password:
            conf["802-11-wireless-security"] = {"key-mgmt": Variant("s", "wpa-psk"), "psk": Variant("s", password)}
        try:
            _conn, active = await self._call(
                bus, NM_PATH, NM, "AddAndActivateConnection", "a{sa{sv}}oo", [conf, device, ap_path]
            )
        except DBusError as exc:
            raise WifiRefused(f"NetworkManager refused the connection: {_reason(exc)}") from None
        log.info("Wi-Fi: joining %r", ssid)
        deadline = time.monotonic() + self.connect_timeout
        while True:
            state = await self._prop(bus, active, ACTIVE, "State")
            if state == ACTIVE_ACTIVATED:
                break
            if state is None or state >= ACTIVE_DEACTIVATED or time.monotonic() > deadline:
                # A wrong password ends here: NetworkManager gives the connection up.
                raise WifiRefused(f"could not join {ssid!r} (wrong password, or out of range)")
            await asyncio.sleep(0.25)
        log.info("Wi-Fi: joined %r", ssid)
        return await self._status(bus)
