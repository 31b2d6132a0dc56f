"""The devices service: the device list, one poller per device, one endpoint (lane + client) per bus.

Every public method is safe from any thread and never blocks on I/O: validation happens at once
(bad input raises DeviceConfigError / WriteRejected with a clear message), the slow part runs in a
worker and its result is handed to `then(outcome)` as an engine task.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from server.bus import Bus, DeviceEvent, Snapshot
from server.engine import Engine, Outcome, TaskClass

from .codec import pack, unpack
from .meters import MeterProfile, is_meter_profile, load_any_profile
from .poller import Poller
from .profile import TYPES, Profile, load_profile
from .store import DeviceConfig, DeviceConfigError, DeviceStore
from .transport import DeviceIOError, Endpoint, Link

log = logging.getLogger("ohm.devices")

Then = Callable[[Outcome[Any]], None] | None


KEEP_SCANS = 16  # scans whose results stay available to scan_status


class WriteRejected(ValueError):
    """A raw write that the device's profile does not allow; the message says why."""


class DeviceService:
    """Owns devices, their pollers and endpoints; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        bus: Bus,
        store: DeviceStore | None = None,
        *,
        backoff_base: float = 1.0,
        backoff_cap: float = 10.0,
        timeout: float | None = None,
        mdns_interfaces: list[str] | None = None,
        mdns_wait: float = 3.0,
    ) -> None:
        self.engine = engine
        self.mdns_interfaces = mdns_interfaces  # None: every interface (tests pin 127.0.0.1)
        self.mdns_wait = mdns_wait  # seconds an mDNS browse listens for announcements
        self.bus = bus
        self.store = store
        # One lane for the device list: saves land in the order they were asked for (add, then change, ...).
        self._store_lane = engine.lane("devices.store", cls=TaskClass.CONTROL)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.timeout = timeout  # overrides profile timeouts (tests use short ones)
        self._lock = threading.RLock()
        self._configs: dict[str, DeviceConfig] = {}
        self._pollers: dict[str, Poller] = {}
        self._endpoints: dict[str, Endpoint] = {}
        self._scans: dict[str, Any] = {}
        self._scan_seq = 0

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start polling every stored device at once (local config is authoritative at boot)."""
        if self.store is None:
            return
        for cfg in self.store.load():
            self._run(cfg)
        log.info("devices: %d configured", len(self._configs))

    def close(self) -> None:
        """Stop all pollers and close every link (shutdown hook)."""
        with self._lock:
            pollers = list(self._pollers.values())
            endpoints = list(self._endpoints.values())
            self._pollers.clear()
        for p in pollers:
            p.stop()
        for ep in endpoints:
            ep.reset()
        if self.store is not None:
            self.store.close()

    # ---- device list ----------------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        """Every device's config with its health."""
        with self._lock:
            return [{**c.as_dict(), "health": self._health(c.id)} for c in self._configs.values()]

    def get(self, device_id: str) -> DeviceConfig:
        """One device's config (KeyError if unknown)."""
        with self._lock:
            if device_id not in self._configs:
                raise KeyError(f"no device {device_id!r}")
            return self._configs[device_id]

    def add(self, data: Mapping[str, Any] | DeviceConfig, then: Then = None) -> DeviceConfig:
        """Validate, start polling at once, and persist (in a worker; `then` hears how that went)."""
        cfg = data if isinstance(data, DeviceConfig) else DeviceConfig.from_dict(dict(data))
        cfg.validate()
        with self._lock:
            if cfg.id in self._configs:
                raise DeviceConfigError(f"id: device {cfg.id!r} exists already (change it instead)")
            self._run(cfg)
        self._persist(lambda s: s.put(cfg), then)
        self._event("device.added", cfg.id)
        return cfg

    def change(self, device_id: str, changes: Mapping[str, Any], then: Then = None) -> DeviceConfig:
        """Apply field changes to a device (restarting its poller) and persist them."""
        with self._lock:
            old = self.get(device_id)
            if "id" in changes and changes["id"] != device_id:
                raise DeviceConfigError("id: cannot be changed; remove and add instead")
            cfg = DeviceConfig.from_dict({**old.as_dict(secrets=True), **dict(changes)})
            self._halt(device_id)
            self._run(cfg)
        self._persist(lambda s: s.put(cfg), then)
        self._event("device.changed", device_id)
        return cfg

    def remove(self, device_id: str, then: Then = None) -> None:
        """Stop polling a device, forget it, and delete it from the store."""
        with self._lock:
            self.get(device_id)
            self._halt(device_id)
            del self._configs[device_id]
        self.bus.forget(device_id)
        self._persist(lambda s: s.delete(device_id), then)
        self._event("device.removed", device_id)

    # ---- readings -------------------------------------------------------------------------

    def snapshot(self, device_id: str) -> Snapshot | None:
        """The latest snapshot of a device (None before its first poll)."""
        latest = self.bus.latest(device_id)
        return latest if isinstance(latest, Snapshot) else None

    def health(self, device_id: str | None = None) -> dict[str, Any]:
        """Health of one device, or of all of them by id."""
        with self._lock:
            if device_id is not None:
                self.get(device_id)
                return self._health(device_id)
            return {d: self._health(d) for d in self._configs}

    def _health(self, device_id: str) -> dict[str, Any]:
        poller = self._pollers.get(device_id)
        if poller is None:
            return {"online": False, "state": "disabled"}
        return poller.health.as_dict()

    # ---- raw register access --------------------------------------------------------------

    def read_raw(
        self,
        device_id: str,
        fc: int,
        address: int,
        count: int = 1,
        then: Then = None,
        *,
        type: str | None = None,
        words: str = "big",
    ) -> None:
        """Read registers (fc 3 or 4); `then` gets {"registers": [...], "value": decoded or None}."""
        self._modbus_only(device_id)
        if fc not in (3, 4):
            raise WriteRejected("fc: raw reads use function code 3 (holding) or 4 (input)")
        if not 0 <= address <= 65535 or not 1 <= count <= 125 or address + count > 65536:
            raise WriteRejected("address/count: 0-65535, 1-125 registers")
        if type is not None and (type not in TYPES or TYPES[type] != count):
            raise WriteRejected(f"type: {type!r} does not fit {count} registers")
        if words not in ("big", "little"):
            raise WriteRejected("words: big or little")
        endpoint, unit = self._endpoint_for(device_id)

        def job() -> dict[str, Any]:
            regs = self._on_link(endpoint, lambda c: c.read(fc, address, count, unit), unit)
            return {"registers": regs, "value": unpack(regs, type, words) if type else None}

        self.engine.offload(job, then, kind="devices.raw_read", cls=TaskClass.CONTROL, lane=endpoint.lane)

    def write_raw(
        self,
        device_id: str,
        address: int,
        value: float | None = None,
        then: Then = None,
        *,
        registers: list[int] | None = None,
        fc: int | None = None,
    ) -> None:
        """Write a writable point of the device's profile, by value or raw registers; bad writes raise."""
        self._modbus_only(device_id)
        profile = load_profile(self.get(device_id).profile)
        spec = profile.writable_point(address)
        if spec is None:
            allowed = ", ".join(f"{w.address} ({w.name})" for w in profile.writable) or "none"
            raise WriteRejected(f"address {address} is not writable on {profile.key} (writable: {allowed})")
        if registers is not None:
            if len(registers) != spec.count or not all(0 <= r <= 0xFFFF for r in registers):
                raise WriteRejected(f"{spec.name} takes {spec.count} registers of 0-65535")
            value = unpack(registers, spec.type, spec.words) * spec.scale
        if value is None:
            raise WriteRejected("give a value or registers")
        if not spec.min <= value <= spec.max:
            raise WriteRejected(f"{spec.name}: {value} is outside [{spec.min:g}, {spec.max:g}] {spec.unit}")
        steps = (value - spec.min) / spec.step
        if abs(steps - round(steps)) > 1e-6:
            raise WriteRejected(f"{spec.name}: {value} is not a multiple of the step {spec.step:g} from {spec.min:g}")
        regs = registers if registers is not None else pack(round(value / spec.scale), spec.type, spec.words)
        code = fc if fc is not None else (6 if spec.count == 1 else 16)
        if code not in (6, 16) or (code == 6 and spec.count != 1):
            raise WriteRejected(f"fc: {spec.name} needs function code 16" if code == 6 else "fc: 6 or 16")
        endpoint, unit = self._endpoint_for(device_id)

        def job() -> dict[str, Any]:
            self._on_link(endpoint, lambda c: c.write(address, regs, unit, code), unit)
            log.info("device %s: wrote %s = %s %s", device_id, spec.name, value, spec.unit)
            return {"point": spec.name, "value": value, "registers": regs}

        self.engine.offload(job, then, kind="devices.raw_write", cls=TaskClass.CONTROL, lane=endpoint.lane)

    def _modbus_only(self, device_id: str) -> None:
        if is_meter_profile(self.get(device_id).profile):
            raise WriteRejected(f"device {device_id!r} is a meter without Modbus registers (read its readings instead)")

    @staticmethod
    def _on_link(endpoint: Endpoint, fn: Callable[[Any], Any], unit: int) -> Any:
        try:
            return fn(endpoint.ensure(unit))
        except DeviceIOError:
            endpoint.reset()
            raise

    # ---- discovery ------------------------------------------------------------------------

    def scan(
        self,
        *,
        hosts: str | list[str] = "",
        ports: list[int] | None = None,
        serial: list[str] | None = None,
        mdns: bool = False,
        **kw: Any,
    ) -> str:
        """Start a discovery scan (TCP hosts x ports, serial ports x bauds, and/or mDNS); returns its id."""
        from .discovery import DEFAULT_PORTS, Scan

        if mdns:
            from . import mdns as mdns_browse

            wait, interfaces = self.mdns_wait, self.mdns_interfaces
            kw["extra"] = [lambda: mdns_browse.browse(wait, interfaces)]
        if hosts:
            scan = Scan.tcp(self.engine, hosts, ports or DEFAULT_PORTS, **kw)
        elif serial:
            scan = Scan.serial(self.engine, serial, **kw)
        elif mdns:
            kw.pop("timeout", None)  # per-probe Modbus timeout: nothing to probe
            scan = Scan(self.engine, [], **kw)
        else:
            raise ValueError("give hosts (with ports), serial ports, or mdns to scan")
        with self._lock:
            self._scan_seq += 1
            scan_id = f"scan-{self._scan_seq}"
            self._scans[scan_id] = scan
            # Keep the last few scans' results; forget the oldest finished ones so memory stays bounded.
            finished = [k for k, v in self._scans.items() if v.finished.is_set()]
            for old in finished[: max(0, len(self._scans) - KEEP_SCANS)]:
                del self._scans[old]
        scan.start()
        return scan_id

    def scan_status(self, scan_id: str) -> dict[str, Any]:
        """Progress and findings of a scan (KeyError if unknown)."""
        return self._scans[scan_id].progress()

    def cancel_scan(self, scan_id: str) -> None:
        """Cancel a running scan (KeyError if unknown)."""
        self._scans[scan_id].cancel()

    # ---- internals ------------------------------------------------------------------------

    def _link(self, cfg: DeviceConfig, profile: Profile | MeterProfile) -> Link:
        q = profile.quirks
        return Link(
            transport=cfg.transport or q.transport,
            host=cfg.host,
            port=cfg.port or q.port,
            device=cfg.device,
            # 7E1 on a P1 port means DSMR 2.2/3.0, which always runs at 9600 baud
            baudrate=cfg.baudrate or (9600 if cfg.parity == "E" and isinstance(profile, MeterProfile) else q.baudrate),
            parity=cfg.parity or q.parity,
            stopbits=q.stopbits,
            logger_serial=cfg.logger_serial,
            timeout=self.timeout if self.timeout is not None else q.timeout,
            connect_delay=q.connect_delay,
            secret=cfg.token,
            tls_pin=cfg.tls_pin,
        )

    def _run(self, cfg: DeviceConfig) -> None:
        with self._lock:
            self._configs[cfg.id] = cfg
            if not cfg.enabled:
                return
            profile = load_any_profile(cfg.profile)
            link = self._link(cfg, profile)
            endpoint = self._endpoints.get(link.key)
            if endpoint is None:
                kind = "meter" if isinstance(profile, MeterProfile) else "modbus"
                lane = self.engine.lane(f"{kind}.{link.key}", gap=profile.quirks.request_gap)
                endpoint = self._endpoints[link.key] = Endpoint(link, lane)
            endpoint.users += 1
            unit = cfg.unit_id if cfg.unit_id >= 0 else profile.quirks.unit_id
            poller = Poller(
                self.engine,
                self.bus,
                cfg.id,
                profile,
                endpoint,
                unit=unit,
                interval=cfg.interval,
                backoff_base=self.backoff_base,
                backoff_cap=self.backoff_cap,
            )
            self._pollers[cfg.id] = poller
            if link.transport == "envoy" and link.secret and not cfg.tls_pin:
                poller.on_pin = lambda pin, device_id=cfg.id: self._pin(device_id, pin)
        poller.start()

    def _pin(self, device_id: str, pin: str) -> None:
        """Keep the certificate an Envoy showed on first contact (the poller restarts with the pin)."""

        def keep(now: float) -> None:
            try:
                if not self.get(device_id).tls_pin:
                    self.change(device_id, {"tls_pin": pin})
                    log.info("device %s: Envoy certificate pinned (sha256 %s...)", device_id, pin[:16])
            except (KeyError, DeviceConfigError):
                pass  # removed or changed meanwhile

        self.engine.call_soon(keep, kind="devices.pin", cls=TaskClass.CONTROL)

    def _halt(self, device_id: str) -> None:
        poller = self._pollers.pop(device_id, None)
        if poller is None:
            return
        poller.stop()
        endpoint = poller.endpoint
        endpoint.users -= 1
        if endpoint.users <= 0:
            self._endpoints.pop(endpoint.link.key, None)
            self.engine.offload(endpoint.reset, kind="devices.close", lane=endpoint.lane)

    def _endpoint_for(self, device_id: str) -> tuple[Endpoint, int]:
        with self._lock:
            poller = self._pollers.get(device_id)
            if poller is None:
                self.get(device_id)
                raise DeviceConfigError(f"device {device_id!r} is disabled")
            return poller.endpoint, poller.unit

    def _persist(self, fn: Callable[[DeviceStore], None], then: Then) -> None:
        store = self.store
        if store is None:
            if then is not None:
                self.engine.call_soon(lambda now: then(Outcome(value=None)), kind="devices.store")
            return
        self.engine.offload(lambda: fn(store), then, kind="devices.store", cls=TaskClass.CONTROL, lane=self._store_lane)

    def _event(self, kind: str, device_id: str) -> None:
        self.bus.emit(DeviceEvent(kind, self.engine.clock.time(), device_id))


def with_overrides(cfg: DeviceConfig, **changes: Any) -> DeviceConfig:
    """A copy of `cfg` with fields changed and validated."""
    new = replace(cfg, **changes)
    new.validate()
    return new
