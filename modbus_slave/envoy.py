"""Enphase Envoy / IQ Gateway simulator: `/production.json`, `/ivp/meters`, `/ivp/meters/readings` on 127.0.0.1.

With `token` set it behaves like firmware 7+: every request needs `Authorization: Bearer <token>`
(else 401), and `start(tls=...)` serves HTTPS like the real gateway's self-signed certificate.
Faults as in modbus_slave.homewizard (error, denied, slow, garbage); `meters=False` is an Envoy
without CT meters (`/ivp/meters` answers 404, production comes from the microinverters only).

    python -m modbus_slave.envoy --port 0 [--token T]
"""

from __future__ import annotations

import argparse
import hmac
import sys
from typing import Any

from .homewizard import FAULTS, JsonHttpSimulator
from .signals import wait_for_signal

PRODUCTION_EID, NET_EID, TOTAL_EID = 704643328, 704643584, 704643840

# Shaped like a metered IQ Gateway's answers (firmware D7.x): production CT, net-consumption CT on 3 phases.
PRODUCTION_JSON: dict[str, Any] = {
    "production": [
        {"type": "inverters", "activeCount": 16, "readingTime": 1700000000, "wNow": 3012, "whLifetime": 21804152},
        {
            "type": "eim",
            "activeCount": 1,
            "measurementType": "production",
            "readingTime": 1700000003,
            "wNow": 3050.5,
            "whLifetime": 21950042.1,
            "rmsCurrent": 13.2,
            "rmsVoltage": 693.9,
        },
    ],
    "consumption": [
        {
            "type": "eim",
            "activeCount": 1,
            "measurementType": "total-consumption",
            "readingTime": 1700000003,
            "wNow": 1210.4,
            "whLifetime": 18441200.5,
        },
        {
            "type": "eim",
            "activeCount": 1,
            "measurementType": "net-consumption",
            "readingTime": 1700000003,
            "wNow": -1840.1,
            "whLifetime": -3508841.6,
        },
    ],
    "storage": [{"type": "acb", "activeCount": 0, "readingTime": 0, "wNow": 0, "whNow": 0, "state": "idle"}],
}
METERS: list[dict[str, Any]] = [
    {"eid": PRODUCTION_EID, "state": "enabled", "measurementType": "production", "phaseMode": "three"},
    {"eid": NET_EID, "state": "enabled", "measurementType": "net-consumption", "phaseMode": "three"},
    {"eid": TOTAL_EID, "state": "disabled", "measurementType": "total-consumption", "phaseMode": "three"},
]


def _channel(v: float, a: float, w: float) -> dict[str, Any]:
    return {"voltage": v, "current": a, "activePower": w, "freq": 50.02}


READINGS: list[dict[str, Any]] = [
    {
        "eid": PRODUCTION_EID,
        "timestamp": 1700000003,
        "actEnergyDlvd": 21950042.1,
        "actEnergyRcvd": 1123.4,
        "activePower": 3050.5,
        "voltage": 693.9,
        "current": 13.2,
        "freq": 50.02,
        "channels": [_channel(231.2, 4.4, 1016.8), _channel(231.4, 4.4, 1016.9), _channel(231.3, 4.4, 1016.8)],
    },
    {
        "eid": NET_EID,
        "timestamp": 1700000003,
        "actEnergyDlvd": 9876543.2,
        "actEnergyRcvd": 13385384.8,
        "activePower": -1840.1,
        "voltage": 693.9,
        "current": 8.1,
        "freq": 50.02,
        "channels": [_channel(231.2, 2.7, -613.4), _channel(231.4, 2.7, -613.3), _channel(231.3, 2.7, -613.4)],
    },
]


class EnvoySimulator(JsonHttpSimulator):
    """An IQ Gateway with production and net-consumption CT meters (or none), optionally token-protected."""

    def __init__(self, *, token: str = "", meters: bool = True, **kw: Any) -> None:
        self.token = token
        docs: dict[str, Any] = {"/production.json": PRODUCTION_JSON}
        if meters:
            docs["/ivp/meters"] = METERS
            docs["/ivp/meters/readings"] = READINGS
        super().__init__(docs, **kw)

    def authorised(self, headers: dict[str, str]) -> bool:
        """Firmware 7+: the Bearer token must match (compared in constant time)."""
        if not self.token:
            return True
        given = headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode())


def main(argv: list[str] | None = None) -> int:
    """Run an Envoy simulator until interrupted."""
    ap = argparse.ArgumentParser(prog="python -m modbus_slave.envoy", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default="", help="require this Bearer token (firmware 7+ behaviour)")
    ap.add_argument("--no-meters", action="store_true", help="an Envoy without CT meters")
    ap.add_argument("--fault", choices=FAULTS)
    args = ap.parse_args(argv)
    sim = EnvoySimulator(token=args.token, meters=not args.no_meters, fault=args.fault).start(args.host, args.port)
    print(f"Envoy http://{args.host}:{sim.port}/production.json", flush=True)
    return wait_for_signal(sim.stop)


if __name__ == "__main__":
    sys.exit(main())
