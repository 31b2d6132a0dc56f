"""A gateway process (identity, outbox, telemetry; no uplink) fed numbered readings as fast as a poller would.

Usage: feeder_proc.py DATA_DIR RATE BATCH_INTERVAL COUNTER_FILE
After each reading is handed to the bus (the poll is done), its number is written into COUNTER_FILE
(8 bytes, memory-mapped: it survives kill -9), so a test knows exactly what was polled before the kill.
"""

from __future__ import annotations

import mmap
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from server.bus import Point, Snapshot
from server.config import load
from server.crypto.service import attach as identity
from server.gateway import Gateway
from server.outbox.service import attach as outbox
from server.telemetry.service import attach as telemetry


def main() -> None:
    """Feed until killed."""
    data, rate, interval, counter = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
    overrides = {"data_dir": data, "stats_interval": 0, "telemetry.batch_interval": interval}
    gw = Gateway(load(None, env={}, overrides=overrides), services=[identity, outbox, telemetry])
    gw.start()
    gw.engine.start_thread()
    counter.write_bytes(struct.pack("<q", -1))
    with counter.open("r+b") as f:
        mem = mmap.mmap(f.fileno(), 8)
        print("ready", flush=True)
        i = 0
        while True:
            gw.bus.publish(Snapshot("feed", time.time(), time.monotonic(), True, {"n": Point(i, "")}))
            mem[:8] = struct.pack("<q", i)
            i += 1
            time.sleep(1 / rate)


if __name__ == "__main__":
    main()
