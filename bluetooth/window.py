"""The provisioning window as the BLE service sees it: the server's state, or a local window if it has none."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("ohm.ble")


@dataclass(frozen=True)
class WindowState:
    """Open or not, seconds left, and whether the gateway was provisioned already."""

    open: bool = False
    closes_in_s: float = 0.0
    provisioned: bool = False
    source: str = "unknown"  # server, local or unknown


class Window:
    """Pure state keeping: fed by server replies (or local opens) and the clock; reports changes once."""

    def __init__(self, local_seconds: float = 300.0, on_change: Callable[[WindowState], None] | None = None) -> None:
        self.local_seconds = local_seconds
        self.on_change = on_change
        self.state = WindowState()
        self._local_until: float | None = None
        self._mode = "unknown"
        self._problem: int | None = None

    @property
    def mode(self) -> str:
        """server (it has /api/provisioning), local (it has not) or unknown (not reached yet)."""
        return self._mode

    def from_server(self, status: int, body: Any, now: float) -> None:
        """Take a GET /api/provisioning answer."""
        if status == 404:
            if self._mode != "local":
                log.warning(
                    "server has no /api/provisioning; the BLE service keeps a local %gs window", self.local_seconds
                )
                self._mode = "local"
                self._local_until = now + self.local_seconds  # like a first boot: open once at start
            self.tick(now)
            return
        if status != 200 or not isinstance(body, dict):
            if status != self._problem:  # once per kind of problem (a wrong token, a server error), not per poll
                self._problem = status
                log.warning("provisioning state unavailable: the server answered HTTP %s", status)
            return
        self._problem = None
        if self._mode != "server":
            log.info("provisioning window state comes from the server")
            self._mode = "server"
        closes = body.get("closes_in_s")
        self._set(
            WindowState(
                open=bool(body.get("window_open")),
                closes_in_s=float(closes) if isinstance(closes, int | float) else 0.0,
                provisioned=bool(body.get("provisioned")),
                source="server",
            )
        )

    def open_local(self, now: float) -> None:
        """Open the local window (button or CLI while the server has no provisioning API)."""
        self._local_until = now + self.local_seconds
        self.tick(now)

    def tick(self, now: float) -> None:
        """Close a local window whose time is up."""
        if self._mode != "local":
            return
        left = 0.0 if self._local_until is None else max(0.0, self._local_until - now)
        self._set(
            WindowState(open=left > 0, closes_in_s=round(left, 1), provisioned=self.state.provisioned, source="local")
        )

    def mark_provisioned(self) -> None:
        """Wi-Fi was set through BLE (local mode remembers it for the state byte)."""
        self._set(WindowState(self.state.open, self.state.closes_in_s, True, self.state.source))

    def _set(self, new: WindowState) -> None:
        old, self.state = self.state, new
        if (old.open, old.provisioned) != (new.open, new.provisioned):
            log.info(
                "provisioning window %s (%s)%s",
                "open" if new.open else "closed",
                new.source,
                ", gateway provisioned" if new.provisioned else "",
            )
            if self.on_change is not None:
                self.on_change(new)
