"""Restart (a clean stop with an exit code the container or systemd restarts) and reboot through logind."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

log = logging.getLogger("ohm.system")

# EX_TEMPFAIL: "try again". Non-zero on purpose: docker's `restart: on-failure` / `unless-stopped` and
# systemd's `Restart=on-failure` all start the gateway again; a plain stop (SIGTERM) still exits 0.
RESTART_EXIT_CODE = 75
REPLY_GRACE_S = 0.3  # s between answering 202 and starting the stop, so the answer reaches the caller
LOGIND = "org.freedesktop.login1"
LOGIND_PATH = "/org/freedesktop/login1"
LOGIND_MANAGER = "org.freedesktop.login1.Manager"
CALL_TIMEOUT = 10.0
UNKNOWN_SERVICE = ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner")


class PowerUnavailable(RuntimeError):
    """No logind on the system bus (dev machine, container without the host's bus): 503."""


def restart(gateway: Any) -> None:
    """Stop the gateway gracefully a moment from now; the process then exits with RESTART_EXIT_CODE."""
    gateway.exit_code = RESTART_EXIT_CODE
    log.warning("restart requested: stopping cleanly, exit code %d", RESTART_EXIT_CODE)
    # Not on this (request) thread: stop() waits for the engine, and the 202 must go out first.
    timer = threading.Timer(REPLY_GRACE_S, gateway.stop)
    timer.daemon = True
    timer.start()


def reboot(bus_address: str | None) -> str:
    """Ask logind to reboot the machine (blocking; run it on a worker). Returns logind's CanReboot answer."""
    return asyncio.run(_reboot(bus_address or None))


async def _reboot(address: str | None) -> str:
    try:
        bus = await asyncio.wait_for(MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect(), CALL_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise PowerUnavailable(f"no system D-Bus: {exc}") from None
    try:
        can = await _call(bus, "CanReboot", "", [])
        answer = str(can[0]) if can else "na"
        if answer in ("no", "na"):
            raise PowerUnavailable(f"logind does not allow a reboot here (CanReboot: {answer})")
        await _call(bus, "Reboot", "b", [False])  # not interactive: no polkit prompt on a headless box
        log.warning("reboot requested from logind")
        return answer
    finally:
        bus.disconnect()


async def _call(bus: MessageBus, member: str, signature: str, body: list[Any]) -> list[Any]:
    msg = Message(
        destination=LOGIND, path=LOGIND_PATH, interface=LOGIND_MANAGER, member=member, signature=signature, body=body
    )
    reply = await asyncio.wait_for(bus.call(msg), CALL_TIMEOUT)
    if reply is None:
        return []
    if reply.message_type == MessageType.ERROR:
        if reply.error_name in UNKNOWN_SERVICE:
            raise PowerUnavailable("logind is not running on the system bus")
        text = str(reply.body[0]).strip().splitlines()[-1][:200] if reply.body else reply.error_name
        raise PowerUnavailable(f"logind refused: {text}")
    return list(reply.body)
