"""mDNS discovery (zeroconf): HomeWizard meters, Enphase Envoys and other Ohm gateways on the LAN.

`browse()` listens for the announced service types for a few seconds and resolves each instance to an
address, a port and its TXT record, as `Found` rows like the Modbus scan's, so one scan result lists
both. It blocks (run it in a worker); `interfaces` limits where it multicasts (tests: 127.0.0.1 only).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .discovery import Found

log = logging.getLogger("ohm.devices.mdns")


@dataclass(frozen=True)
class Kind:
    """What an mDNS service type means for us."""

    transport: str  # the device transport to add it with ("ohm": another gateway, not a device)
    profile: str | None
    maker: str


SERVICES: dict[str, Kind] = {
    "_hwenergy._tcp.local.": Kind("homewizard", "homewizard_p1", "HomeWizard"),
    "_enphase-envoy._tcp.local.": Kind("envoy", "envoy", "Enphase"),
    "_ohm._tcp.local.": Kind("ohm", None, "Ohm"),
}


def _text(props: dict[bytes, bytes | None], *keys: str) -> str:
    for key in keys:
        value = props.get(key.encode())
        if value:
            return value.decode("utf-8", "replace")[:64]
    return ""


def to_found(service_type: str, name: str, host: str, port: int, props: dict[bytes, bytes | None]) -> Found:
    """One resolved announcement as a scan finding with a suggested profile and a hint for the owner."""
    kind = SERVICES[service_type]
    found = Found(kind.transport, host=host, port=port, unit_id=0, manufacturer=kind.maker)
    found.source, found.name = "mdns", name.removesuffix("." + service_type)
    found.serial = _text(props, "serial", "serialnum", "id")
    found.model = _text(props, "product_type", "product_name", "model")
    if kind.transport == "homewizard":
        if found.model and found.model != "HWE-P1":
            found.note = f"{found.model} is not a P1 meter; only the HWE-P1 has a profile"
        else:
            found.profile, found.score = kind.profile, 1.0
        if _text(props, "api_enabled") == "0":
            found.note = "the local API is off: switch it on in the HomeWizard app"
    elif kind.transport == "envoy":
        found.profile, found.score = kind.profile, 1.0
        version = _text(props, "protovers", "version")
        found.model = found.model or "IQ Gateway"
        if version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 7:
            found.note = f"firmware {version}: needs the owner's token (add the device with `token`)"
    else:
        found.note = "another Ohm gateway"
    return found


def browse(
    wait: float = 3.0, interfaces: Sequence[str] | None = None, services: Sequence[str] = tuple(SERVICES)
) -> list[Found]:
    """Everything announcing `services` within `wait` seconds (blocking; run in a worker)."""
    from zeroconf import InterfaceChoice, IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

    seen: dict[tuple[str, str], None] = {}
    lock = threading.Lock()

    def on_change(zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        if state_change is not ServiceStateChange.Removed:
            with lock:
                seen[(service_type, name)] = None

    zc = Zeroconf(interfaces=list(interfaces) if interfaces else InterfaceChoice.All, ip_version=IPVersion.V4Only)
    try:
        browser = ServiceBrowser(zc, list(services), handlers=[on_change])
        threading.Event().wait(wait)  # answers arrive on zeroconf's own thread
        browser.cancel()
        found: list[Found] = []
        with lock:
            names = list(seen)
        for service_type, name in names:
            info = zc.get_service_info(service_type, name, timeout=1000)
            if info is None or not info.parsed_addresses():
                log.debug("mDNS %s did not resolve", name)
                continue
            props = dict(info.properties or {})
            found.append(to_found(service_type, name, info.parsed_addresses()[0], info.port or 0, props))
        return sorted(found, key=lambda f: (f.transport, f.host, f.port))
    finally:
        zc.close()
