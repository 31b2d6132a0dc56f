from __future__ import annotations

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


def snap(device: str, i: int) -> Snapshot:
    return Snapshot(device, time.time(), time.monotonic(), True, {"p": Point(float(i), "W"), "n": Point(i, "")})


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    def make(broker: Any = None, data: str = "gw", **settings: Any) -> Gateway:
        overrides = {
            "data_dir": tmp_path / data,
            "stats_interval": 0,
            "telemetry.batch_interval": 0.1,
            "mqtt.backoff_max": 1.0,
            "identity.backend": "software",
        }
        if broker is not None:
            overrides["mqtt.host"] = "127.0.0.1"
            overrides["mqtt.port"] = broker.port
        overrides.update({k.replace("__", "."): v for k, v in settings.items()})
        return start(overrides, [identity, outbox, telemetry, uplink])

    with gateway_pool() as start:
        yield make
