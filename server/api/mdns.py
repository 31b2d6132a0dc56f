"""mDNS: advertise the gateway as `_ohm._tcp.local.` (port = API port; TXT id, version, path=/api).

Bound to the API's own address when it listens on one (127.0.0.1 in tests: nothing leaves loopback),
to every interface when it listens on 0.0.0.0. Registration runs on zeroconf's own loop, so no engine
worker waits through its 1.5 s of probing; a failure is logged once and the gateway runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from typing import Any

import server

log = logging.getLogger("ohm.mdns")

SERVICE_TYPE = "_ohm._tcp.local."


def addresses_for(host: str) -> tuple[list[str] | Any, list[str]]:
    """(zeroconf interfaces, advertised IPv4 addresses) for the API's listen address."""
    from zeroconf import InterfaceChoice

    if host not in ("", "0.0.0.0"):
        return [host], [host]
    import ifaddr  # a zeroconf dependency

    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback:
                found.append(ip.ip)
    return InterfaceChoice.All, found


def instance_name(name: str) -> str:
    """A DNS-SD instance label: the gateway name without dots, at most 63 bytes."""
    label = name.replace(".", "-").strip() or "Ohm"
    return label.encode("utf-8")[:63].decode("utf-8", errors="ignore")


class Advertiser:
    """One Zeroconf instance with our one service; `stop()` says goodbye and closes it."""

    def __init__(self, host: str, port: int, gateway_id: str, name: str) -> None:
        self.host, self.port, self.gateway_id, self.name = host, port, gateway_id, name
        self.zc: Any = None
        self.info: Any = None
        self._future: Any = None

    def start(self) -> None:
        """Open the sockets and start registering (returns before probing ends)."""
        from zeroconf import IPVersion, ServiceInfo, Zeroconf

        interfaces, addrs = addresses_for(self.host)
        self.info = ServiceInfo(
            SERVICE_TYPE,
            f"{instance_name(self.name)}.{SERVICE_TYPE}",
            port=self.port,
            properties={"id": self.gateway_id, "version": server.__version__, "path": "/api"},
            server=f"{self.gateway_id or 'ohm'}.local.",
            addresses=[socket.inet_aton(a) for a in addrs],
        )
        self.zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        self._future = asyncio.run_coroutine_threadsafe(self._register(), self.zc.loop)
        self._future.add_done_callback(self._registered)

    async def _register(self) -> None:
        waiter = await self.zc.async_register_service(self.info, allow_name_change=True)
        await waiter  # the announcements went out

    def _registered(self, future: Any) -> None:
        if future.cancelled():
            return  # stopped before probing ended
        exc = future.exception()
        if exc is not None:
            log.warning("mDNS registration failed: %s", exc)
        else:
            log.info("mDNS: advertising %s on port %d", self.info.name, self.port)

    def stop(self) -> None:
        """Unregister (goodbye packets) and close the sockets."""
        if self.zc is None:
            return
        if self._future is not None and not self._future.done():
            # Cancel the probing and let the loop process it, so no task is left pending at close.
            self._future.cancel()
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_settle(), self.zc.loop).result(2)
        try:
            self.zc.unregister_all_services()
        except Exception as exc:  # noqa: BLE001 - closing anyway
            log.debug("mDNS unregister: %s", exc)
        self.zc.close()
        self.zc = None


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def attach(gateway: Any, host: str, port: int) -> Advertiser | None:
    """Start advertising if mdns.enabled; stopped on engine shutdown. Called by the API's attach."""
    cfg = gateway.config
    if not cfg.get("mdns.enabled", True):
        log.info("mDNS off (mdns.enabled = false)")
        return None
    signer = (gateway.services or {}).get("identity")
    gateway_id = getattr(signer, "device_id", "") or ""
    name = cfg.get("name") or (f"Ohm-{gateway_id.removeprefix('ohm-')[:8]}" if gateway_id else "Ohm")
    adv = Advertiser(host, port, gateway_id, name)
    try:
        adv.start()
    except Exception as exc:  # noqa: BLE001 - e.g. no multicast on this interface: log and run on
        log.warning("mDNS not started: %s", exc)
        adv.stop()
        return None
    gateway.services["mdns"] = adv
    gateway.engine.on_shutdown("mdns", adv.stop)
    return adv
