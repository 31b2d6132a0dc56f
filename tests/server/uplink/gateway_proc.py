"""A gateway process for crash tests: real services, fed with snapshots at a steady rate.

Usage: python gateway_proc.py DATA_DIR PORT(0 = no uplink) FEED_PER_S BACKLOG_RATE
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from server.bus import Point, Snapshot
from server.config import load
from server.crypto.service import attach as identity
from server.gateway import Gateway
from server.outbox.service import attach as outbox
from server.telemetry.service import attach as telemetry
from server.uplink.service import attach as uplink


def main() -> None:
    data, port, feed, rate = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    overrides = {
        "data_dir": data,
        "stats_interval": 0,
        "telemetry.batch_interval": 0.05,
        "mqtt.backoff_max": 0.5,
        "mqtt.backlog_rate": rate,
        "mqtt.inflight": 8,
        "identity.backend": "software",
        "mqtt.host": "127.0.0.1" if port else "",
        "mqtt.port": port,
    }
    gw = Gateway(load(None, env={}, overrides=overrides), services=[identity, outbox, telemetry, uplink])
    gw.start()

    def feeder() -> None:
        i = 0
        while feed > 0:
            gw.bus.publish(Snapshot("dev", time.time(), time.monotonic(), True, {"n": Point(i, "")}))
            i += 1
            time.sleep(1 / feed)

    threading.Thread(target=feeder, daemon=True).start()
    print("ready", flush=True)
    gw.engine.run()


if __name__ == "__main__":
    main()
