"""Fixtures of the reliability suite: fault proxies, in-process gateways, consumers, a simulator."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from server.bus import Point, Snapshot
from server.crypto.service import attach as identity
from server.gateway import Gateway
from server.outbox.service import attach as outbox
from server.telemetry.service import attach as telemetry
from server.uplink.service import attach as uplink
from tests.support import gateway_pool

from .proxy import LinkProxy

# CI compresses time: the patterns' minutes become fractions of a second (make soak raises it).
SCALE = float(os.environ.get("RELIABILITY_SCALE", "0.01"))


def snap(device: str, i: int) -> Snapshot:
    """A reading whose counter `n` shows order and loss."""
    return Snapshot(device, time.time(), time.monotonic(), True, {"p": Point(float(i), "W"), "n": Point(i, "")})


class Feeder:
    """Publishes numbered snapshots on a gateway's bus from a thread, at `rate` per second."""

    def __init__(self, gw: Gateway, device: str = "inv1", rate: float = 100.0) -> None:
        self.gw, self.device, self.rate = gw, device, rate
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1 / self.rate):
            n = self.sent
            self.sent += 1  # counted before it is handed over: stop() never reports fewer than were published
            self.gw.bus.publish(snap(self.device, n))

    def start(self) -> Feeder:
        """Begin publishing."""
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop; returns how many were published."""
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the feeder is stuck in bus.publish"
        return self.sent


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[int], LinkProxy]]:
    made: list[LinkProxy] = []

    def make(upstream_port: int) -> LinkProxy:
        p = LinkProxy(upstream_port).start()
        made.append(p)
        return p

    try:
        yield make
    finally:
        for p in made:
            p.stop()


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """In-process gateways with identity, outbox, telemetry and uplink to 127.0.0.1:`port` (0 = no uplink)."""

    def make(port: int = 0, data: str = "gw", devices: list[int] | None = None, **settings: Any) -> Gateway:
        """`devices`: Modbus ports of SMA simulators to store as dev0, dev1, ... (polled every second)."""
        overrides: dict[str, Any] = {
            "data_dir": tmp_path / data,
            "stats_interval": 0,
            "telemetry.batch_interval": 0.1,
            "mqtt.backoff_max": 1.0,
            "identity.backend": "software",
            "mqtt.host": "127.0.0.1" if port else "",
            "mqtt.port": port or 1883,
        }
        overrides.update({k.replace("__", "."): v for k, v in settings.items()})
        services = [identity, outbox, telemetry, uplink]
        if devices:
            from server.devices import attach as devices_service
            from server.devices.store import DeviceConfig, DeviceStore

            (tmp_path / data).mkdir(mode=0o700, parents=True, exist_ok=True)
            store = DeviceStore(tmp_path / data / "devices.sqlite")
            for i, dev_port in enumerate(devices):
                cfg = {"id": f"dev{i}", "profile": "sma", "host": "127.0.0.1", "port": dev_port, "interval": 1}
                store.put(DeviceConfig.from_dict(cfg))
            store.close()
            services.insert(0, devices_service)
        return start(overrides, services)

    with gateway_pool() as start:
        yield make


def report(test: str, **figures: Any) -> None:
    """Print measured figures (shown with -s) and append them to $RELIABILITY_REPORT as a JSON line."""
    import json

    line = json.dumps({"test": test, **figures}, default=str)
    print(f"RELIABILITY {line}")
    path = os.environ.get("RELIABILITY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def resources() -> dict[str, int]:
    """Threads, open file descriptors and resident memory (kB) of this process."""
    rss = 0
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return {"threads": threading.active_count(), "fds": len(os.listdir("/proc/self/fd")), "rss_kb": rss}


def open_fds() -> dict[int, str]:
    """This process's open descriptors, sockets described as 'tcp LOCALPORT->REMOTEPORT STATE' (for diagnosis)."""
    states = {"01": "ESTABLISHED", "02": "SYN_SENT", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN"}
    inodes: dict[str, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                for line in list(f)[1:]:
                    parts = line.split()
                    local, remote, st, inode = parts[1], parts[2], parts[3], parts[9]
                    lp, rp = int(local.split(":")[1], 16), int(remote.split(":")[1], 16)
                    inodes[inode] = f"tcp {lp}->{rp} {states.get(st, st)}"
        except OSError:
            pass
    out: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            target = inodes.get(target[8:-1], target)
        out[int(name)] = target
    return out
