"""The system service: stored settings and owner, the provisioning window, Wi-Fi and power, as one attach.

Registers gateway.services["settings"], ["provisioning"], ["wifi"] and ["system"]. Blocking work
(NetworkManager, logind, the settings file) runs on workers through engine lanes, never on the engine
thread. Attached by default_services(); a gateway built without it has nothing to provision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from server.engine import Outcome, TaskClass
from server.settings import LIVE_KEYS, SettingsStore, pending_restart, running_with

from .system_provisioning import Provisioning

if TYPE_CHECKING:
    from server.gateway import Gateway

log = logging.getLogger("ohm.system")
Then = Callable[[Outcome[Any]], None]


class LazyNetworkManager:
    """The NetworkManager client, built on first use: dbus-fast (~2 MB, up to 150 ms) loads only when Wi-Fi is asked."""

    def __init__(self, address: str | None, connect_timeout: float) -> None:
        self._address = address
        self._connect_timeout = connect_timeout
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            from server.wifi import NetworkManager

            self._client = NetworkManager(self._address, connect_timeout=self._connect_timeout)
        return getattr(self._client, name)


class Wifi:
    """NetworkManager calls on the "wifi" lane (one at a time), results handed to `then`."""

    def __init__(self, gateway: Any, client: Any, provisioning: Provisioning) -> None:
        self.gateway = gateway
        self.client = client
        self.provisioning = provisioning
        self.lane = gateway.engine.lane("wifi", cls=TaskClass.PROVISIONING)

    def _run(self, kind: str, fn: Callable[[], Any], then: Then, *, changes: bool = False) -> None:
        def done(outcome: Outcome[Any]) -> None:
            if changes:
                self.provisioning.refresh_wifi()  # a saved connection came or went
            then(outcome)

        self.gateway.engine.offload(fn, done, kind=f"wifi.{kind}", cls=TaskClass.PROVISIONING, lane=self.lane)

    def status(self, then: Then) -> None:
        """State, SSID, signal and IP of the Wi-Fi device."""
        self._run("status", self.client.status, then)

    def scan(self, then: Then) -> None:
        """Networks in range, strongest first."""
        self._run("scan", lambda: [ap.as_dict() for ap in self.client.scan()], then)

    def connect(self, ssid: str, password: str, hidden: bool, then: Then) -> None:
        """Join a network (the password goes to NetworkManager only)."""
        self._run("connect", lambda: self.client.connect(ssid, password, hidden=hidden), then, changes=True)

    def forget(self, ssid: str, then: Then) -> None:
        """Delete the saved connections of an SSID."""
        self._run("forget", lambda: self.client.forget(ssid), then, changes=True)


class System:
    """Settings changes, the owner, restart and reboot: what the system routes call."""

    def __init__(self, gateway: Any, store: SettingsStore) -> None:
        self.gateway = gateway
        self.store = store
        self.lane = gateway.engine.lane("system.settings", cls=TaskClass.CONTROL)

    def describe(self) -> dict[str, Any]:
        """Every setting as GET /api/settings shows it, and the keys waiting for a restart."""
        from server.config import FIELDS
        from server.settings import describe

        stored = self.store.stored()
        config = self.gateway.config
        return {
            "settings": {f.key: describe(f.key, config, stored) for f in FIELDS},
            "restart_required": pending_restart(config, stored),
        }

    def change(self, parsed: Mapping[str, Any], then: Then) -> None:
        """Save validated changes on the settings lane, then apply the live ones to the running gateway."""

        def save() -> dict[str, Any]:
            return self.store.save_settings(parsed)

        def saved(outcome: Outcome[Any]) -> None:
            if outcome.ok:
                masked = self._apply_live(parsed)
                changed = sorted(parsed)
                outcome = Outcome(
                    value={
                        "changed": changed,
                        "applied": [k for k in changed if k in LIVE_KEYS and k not in masked and parsed[k] is not None],
                        "overridden": masked,
                        "restart_required": pending_restart(self.gateway.config, outcome.value),
                    }
                )
            then(outcome)

        self.gateway.engine.offload(save, saved, kind="settings.save", cls=TaskClass.CONTROL, lane=self.lane)

    def _apply_live(self, parsed: Mapping[str, Any]) -> list[str]:
        config, masked = running_with(self.gateway.config, parsed)
        old_level = self.gateway.config.get("log_level")
        self.gateway.config = config  # services read gateway.config at run time; one reference swap
        if "log_level" in parsed and "log_level" not in masked and config.get("log_level") != old_level:
            logging.getLogger().setLevel(str(config.get("log_level")).upper())
        return masked

    def set_owner(self, owner: str, name: str | None, force: bool, then: Then) -> None:
        """Record the owner (and name) on the settings lane; the name applies at once."""

        def save() -> dict[str, Any]:
            return self.store.set_owner(owner, name, force=force, now=self.gateway.engine.clock.time())

        def saved(outcome: Outcome[Any]) -> None:
            if outcome.ok and name is not None:
                self._apply_live({"name": outcome.value["name"]})
            then(outcome)

        self.gateway.engine.offload(save, saved, kind="settings.owner", cls=TaskClass.CONTROL, lane=self.lane)

    def restart(self) -> None:
        """Stop cleanly and exit with the code the supervisor restarts."""
        from . import system_power

        system_power.restart(self.gateway)

    def reboot(self, then: Then) -> None:
        """Ask logind to reboot the machine (on a worker)."""
        from . import system_power  # dbus-fast: loaded when someone asks for a reboot

        address = self.gateway.config.get("system.dbus_address") or None
        self.gateway.engine.offload(
            lambda: system_power.reboot(address), then, kind="system.reboot", cls=TaskClass.CONTROL
        )


def attach(gateway: Gateway) -> None:
    """Load the stored settings and owner, set up Wi-Fi, provisioning and power; register them by name."""
    cfg = gateway.config
    started = time.monotonic()
    store = SettingsStore(gateway.data_dir)
    client = LazyNetworkManager(cfg.get("system.dbus_address") or None, cfg.get("wifi.connect_timeout"))
    provisioning = Provisioning(gateway, store, client)
    gateway.services["settings"] = store
    gateway.services["provisioning"] = provisioning
    gateway.services["wifi"] = Wifi(gateway, client, provisioning)
    gateway.services["system"] = System(gateway, store)
    log.debug("system service ready in %.1f ms", (time.monotonic() - started) * 1000)
