"""The provisioning window (single source of truth; the bluetooth service polls it) and the boot check.

A gateway is provisioned when it has an owner and a network: a Wi-Fi connection NetworkManager knows,
or `network.wired` = true (Ethernet, or no network needed). An unprovisioned gateway boots into the
PROVISIONING state with the window open; the window closes on time by an engine task.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from server.engine import Duplicate, EngineStopped, Outcome, TaskClass
from server.statemachine import Event, State

log = logging.getLogger("ohm.provisioning")

MAX_WINDOW_S = 900.0
TASK_NAME = "provisioning.window"


class Provisioning:
    """Window state, the provisioned check, and the state-machine events they cause."""

    def __init__(self, gateway: Any, settings: Any, wifi: Any | None) -> None:
        self.gateway = gateway
        self.settings = settings  # SettingsStore: the owner
        self.wifi = wifi  # NetworkManager client or None: saved Wi-Fi connections
        self.wifi_known: bool | None = None  # None: not asked yet (or NetworkManager unreachable)
        self._lock = threading.Lock()
        self._closes_at: float | None = None  # engine monotonic time; None = closed

    # ---- provisioned? -------------------------------------------------------------------

    def reason(self) -> str:
        """Why the gateway is not provisioned ("" when it is)."""
        missing = []
        if self.settings.owner() is None:
            missing.append("no owner set (POST /api/owner/initialize)")
        if not self.gateway.config.get("network.wired") and not self.wifi_known:
            missing.append("no network configured (join Wi-Fi, or set network.wired = true)")
        return "; ".join(missing)

    def provisioned(self) -> bool:
        """Owner set and a network configured."""
        return not self.reason()

    def check_wifi_now(self) -> None:
        """Ask NetworkManager (blocking, bounded) whether a Wi-Fi connection is saved."""
        if self.wifi is None:
            return
        try:
            self.wifi_known = bool(self.wifi.known_ssids())
        except Exception as exc:  # noqa: BLE001 - no NetworkManager on a dev machine: simply not known
            log.info("saved Wi-Fi connections unknown: %s", exc)
            self.wifi_known = False

    def refresh_wifi(self) -> None:
        """Re-read the saved Wi-Fi connections on a worker (after connect/forget)."""
        if self.wifi is not None:
            self.gateway.engine.offload(self.check_wifi_now, self._refreshed, kind="provisioning.wifi_check")

    def _refreshed(self, outcome: Outcome[Any]) -> None:
        if not outcome.ok:
            log.debug("Wi-Fi check failed: %s", outcome.error)

    def boot_check(self) -> bool:
        """Called once by Gateway.start: provisioned or not; if not, the window opens (first boot)."""
        if self.settings.owner() is not None and not self.gateway.config.get("network.wired"):
            self.check_wifi_now()  # only worth a D-Bus round trip when the owner is there already
        ok = self.provisioned()
        if not ok:
            log.warning("not provisioned (%s): provisioning window open", self.reason())
            self.open(None, post=False)  # the BOOTED_UNPROVISIONED event moves the state itself
        return ok

    # ---- the window -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """{window_open, closes_in_s, provisioned, reason} for GET /api/provisioning."""
        now = self.gateway.engine.clock.monotonic()
        with self._lock:
            left = 0.0 if self._closes_at is None else max(0.0, self._closes_at - now)
        reason = self.reason()
        return {"window_open": left > 0, "closes_in_s": round(left, 1), "provisioned": not reason, "reason": reason}

    def open(self, seconds: float | None, *, post: bool = True) -> dict[str, Any]:
        """Open (or extend) the window for `seconds` (default provisioning.window_s)."""
        if seconds is None:
            seconds = float(self.gateway.config.get("provisioning.window_s", 300.0))
        seconds = min(max(float(seconds), 1.0), MAX_WINDOW_S)
        engine = self.gateway.engine
        with self._lock:
            self._closes_at = engine.clock.monotonic() + seconds
        engine.call_later(
            seconds,
            self._expire,
            kind="provisioning.close",
            name=TASK_NAME,
            on_duplicate=Duplicate.REPLACE,  # reopening moves the deadline
            cls=TaskClass.PROVISIONING,
        )
        log.info("provisioning window open for %.0f s", seconds)
        if post and self.gateway.state is not State.BOOTING:
            self.gateway.post(Event.WINDOW_OPENED)
        return self.status()

    def close(self) -> dict[str, Any]:
        """Close the window now."""
        with self._lock:
            was_open = self._closes_at is not None
            self._closes_at = None
        self.gateway.engine.cancel(TASK_NAME)
        if was_open:
            self._closed()
        return self.status()

    def _expire(self, now: float) -> None:
        with self._lock:
            if self._closes_at is None or now < self._closes_at - 1e-6:
                return  # closed meanwhile, or reopened with a later deadline
            self._closes_at = None
        log.info("provisioning window closed (timed out)")
        self._closed()

    def _closed(self) -> None:
        gateway = self.gateway

        def leave(now: float) -> None:
            # Checked when it runs, after any WINDOW_OPENED queued before it (same class, FIFO).
            if gateway.state is not State.PROVISIONING:
                return
            gateway.apply(Event.WINDOW_CLOSED)
            # That leads to OFFLINE; an uplink that connected during the window says so again.
            uplink = (gateway.services or {}).get("uplink")
            if uplink is not None and getattr(uplink, "connected", False):
                gateway.apply(Event.UPLINK_UP)

        try:
            gateway.engine.call_soon(leave, kind="state.window_closed", cls=TaskClass.CONTROL)
        except EngineStopped:
            pass  # shutting down: the state goes to stopping anyway
