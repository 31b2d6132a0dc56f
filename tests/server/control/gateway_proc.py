"""A real gateway process (audit, devices, control) for the kill -9 tests.

Usage: gateway_proc.py DATA_DIR SIM_PORT MODE [ARG]
  hold SECONDS   - add the device, start a timed action, print "ready <id>" once it is active and on disk
  at SECONDS     - add the device, schedule a one-off action SECONDS ahead, print "ready <id>" once on disk
  run            - just run (resuming what the store holds), print "ready"
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from server.audit import attach as audit
from server.config import load
from server.control import attach as control
from server.devices import attach as devices
from server.gateway import Gateway

POINT = "control.power_limit_w"


def main() -> None:
    """Run until killed."""
    data, port, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    arg = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    gw = Gateway(
        load(None, env={}, overrides={"data_dir": data, "stats_interval": 0}), services=[audit, devices, control]
    )
    gw.start()
    gw.engine.start_thread()
    svc = gw.services["control"]
    if mode == "run":
        print("ready", flush=True)
    else:
        gw.services["devices"].add({"id": "inv", "profile": "sma", "host": "127.0.0.1", "port": port, "interval": 60})
        body = {"device": "inv", "point": POINT, "value": 1234}
        if mode == "hold":
            body["duration_s"] = arg
            want = "active"
        else:
            body["at"] = time.time() + arg
            want = "scheduled"
        action = svc.submit(body, "admin@test", "local")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stored = svc.store.get(action.id)
            if stored is not None and stored.state == want:
                break
            time.sleep(0.01)
        print("ready", action.id, flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
