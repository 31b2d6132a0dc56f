"""`make demo`: the gateway on embedded defaults, with everything it talks to running on loopback.

Starts a simulated SMA inverter and an Eastron SDM630 meter (modbus_slave), a mosquitto broker on
127.0.0.1 and the reference consumer, points the gateway at them, and prints what flows: the
gateway's latest readings and how many signed readings the consumer verified and stored.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from server.uplink.broker import free_port

log = logging.getLogger("ohm.demo")

DEVICES = (("demo-inverter", "sma"), ("demo-meter", "eastron_sdm630"))


class Demo:
    """The demo's surroundings: simulators, broker, consumer; started before and stopped after the gateway."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.simulators: list[Any] = []
        self.broker: Any = None
        self.consumer: Any = None
        self.store: Any = None
        self.api_port = 0
        self.ws_port = 0

    def start(self) -> dict[str, Any]:
        """Start everything; returns the settings the gateway needs to use it."""
        from modbus_slave.server import Simulator
        from server.devices.store import DeviceConfig, DeviceStore

        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = DeviceStore(self.data_dir / "devices.sqlite")
        try:
            for device_id, profile in DEVICES:
                sim = Simulator(profile, "127.0.0.1", 0, serial=device_id.upper()).start()
                self.simulators.append(sim)
                # Ports are new each run: replace the stored demo devices.
                store.put(
                    DeviceConfig(
                        id=device_id, profile=profile, transport="tcp", host="127.0.0.1", port=sim.port, interval=2.0
                    )
                )
        finally:
            store.close()
        # The demo is claimed and wired, so it boots straight to harvest and uplink, not to the provisioning window.
        from server.settings import SettingsStore

        owners = SettingsStore(self.data_dir)
        if owners.owner() is None:
            owners.set_owner("demo@localhost", None, force=False, now=time.time())
        # The demo's API listens on loopback only, on a free port.
        self.api_port = free_port()
        self.ws_port = free_port()  # the dashboard's live WebSocket
        overrides: dict[str, Any] = {
            "telemetry.batch_interval": 2.0,
            "api.host": "127.0.0.1",
            "api.port": self.api_port,
            "api.ws_port": self.ws_port,
            "network.wired": True,
        }
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
            print("[demo] mosquitto is not installed (make sysdeps): readings stay in the outbox, nothing is uploaded")
            return overrides
        from server.consumer.consumer import Consumer, ConsumerSettings, ConsumerStore
        from server.uplink.broker import Broker

        self.broker = Broker(self.data_dir / "broker").start()
        self.store = ConsumerStore(self.data_dir / "consumer.sqlite")
        settings = ConsumerSettings(port=self.broker.port, client_id="ohm-demo-consumer")
        self.consumer = Consumer(settings, self.store).start()
        overrides.update({"mqtt.host": "127.0.0.1", "mqtt.port": self.broker.port})
        return overrides

    def banner(self) -> str:
        """What is running where."""
        sims = ", ".join(f"{d} ({p}) on 127.0.0.1:{s.port}" for (d, p), s in zip(DEVICES, self.simulators, strict=True))
        broker = f"mosquitto on 127.0.0.1:{self.broker.port}" if self.broker else "no broker"
        tokens = self.data_dir / "api_tokens.json"
        return (
            f"[demo] simulated devices: {sims}; {broker}; consumer stores into {self.data_dir / 'consumer.sqlite'}\n"
            f"[demo] local API: http://127.0.0.1:{self.api_port}/api/hello (API docs: "
            f"http://127.0.0.1:{self.api_port}/api/openapi.json; tokens in {tokens})\n"
            f"[demo] dashboard: http://127.0.0.1:{self.api_port}/ (paste the read or admin token from {tokens})"
        )

    def report(self, gateway: Any) -> str:
        """One line of what flows: latest readings and what the consumer verified."""
        parts = []
        for device_id, _ in DEVICES:
            snap = gateway.bus.latest(device_id)
            if snap is None:
                parts.append(f"{device_id}: no reading yet")
                continue
            shown = [
                f"{k}={p.value:.0f} {p.unit}"
                for k, p in snap.points.items()
                if k in ("pv.power_w", "grid.power_w", "pv.energy_wh") and isinstance(p.value, int | float)
            ]
            parts.append(f"{device_id}: {'online' if snap.online else 'offline'} {' '.join(shown)}")
        if self.consumer is not None:
            c = self.consumer.counts
            parts.append(
                f"consumer: {c['readings']} signed readings verified in {c['new']} batches, "
                f"{c['duplicate']} duplicates, {c['rejected']} rejected"
            )
        return "[demo] " + " | ".join(parts)

    def stop(self) -> None:
        """Stop everything started, in reverse order."""
        for step in (self._stop_consumer, self._stop_broker, self._stop_simulators):
            try:
                step()
            except Exception:
                log.exception("demo: stopping failed")

    def _stop_consumer(self) -> None:
        if self.consumer is not None:
            self.consumer.stop()
        if self.store is not None:
            self.store.close()

    def _stop_broker(self) -> None:
        if self.broker is not None:
            self.broker.stop()

    def _stop_simulators(self) -> None:
        for sim in self.simulators:
            sim.stop()
