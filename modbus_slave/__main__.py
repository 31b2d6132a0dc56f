"""CLI: python -m modbus_slave --profile sma --port 1502 [--rtu] [--fault drop@0.1] ..."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from server.devices.profile import ProfileError, profile_names

from .faults import FaultError, parse_fault
from .server import Simulator


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m modbus_slave",
        description="Simulate inverters and meters from the gateway's profile files over Modbus TCP or RTU (pty).",
    )
    p.add_argument(
        "--profile",
        action="append",
        help=f"profile to serve; repeat for several devices (ports count up). Known: {', '.join(profile_names())}",
    )
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1502, help="TCP port of the first device (0 = any free port)")
    p.add_argument("--unit", type=int, action="append", help="unit id(s) to answer (default: the profile's)")
    p.add_argument("--rtu", action="store_true", help="serve RTU on a pty instead of TCP (the path is printed)")
    p.add_argument(
        "--fault",
        default="none",
        help="fault: delay=S, exception=CODE, drop, garbage, silent, down, flap=UP/DOWN; append @RATE (e.g. drop@0.1)",
    )
    p.add_argument("--rated-w", type=float, default=5000.0, help="PV peak power of the simulated plant")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run simulators until interrupted."""
    args = build_parser().parse_args(argv)
    try:
        fault = parse_fault(args.fault)
        sims = []
        for i, name in enumerate(args.profile or ["sma"]):
            port = args.port + i if args.port else 0
            sim = Simulator(
                name,
                host=args.host,
                port=port,
                rtu=args.rtu,
                fault=fault,
                unit_ids=tuple(args.unit) if args.unit else None,
                rated_w=args.rated_w,
                serial=f"SIM{i + 1:04d}",
            ).start()
            sims.append(sim)
            where = sim.device if args.rtu else f"{args.host}:{sim.port}"
            print(f"{name}: {'rtu' if args.rtu else 'tcp'} {where} unit {','.join(map(str, sim.unit_ids))}", flush=True)
    except (ProfileError, FaultError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *a: done.set())
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    done.wait()
    for sim in sims:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
