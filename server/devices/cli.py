"""`python -m server profiles` and `python -m server scan`: check profile files, find devices."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from server.cli import subcommand

from .profile import PROFILE_DIR, ProfileError, load_profile_file


def _profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", type=Path, help="profile files to check (default: every bundled profile)")


@subcommand("profiles", "validate device profile files and list their points", _profile_args)
def cmd_profiles(args: argparse.Namespace) -> int:
    """Validate profiles; print one line each, or the first error naming file and field."""
    files = args.files or sorted(PROFILE_DIR.glob("*.yaml"))
    bad = 0
    for path in files:
        try:
            p = load_profile_file(path)
        except ProfileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            bad += 1
            continue
        where = p.quirks.transport + (f" :{p.quirks.port}" if p.quirks.transport != "rtu" else "")
        print(
            f"{p.key:16} {p.maker:10} {where:14} unit {p.quirks.unit_id:<3} {len(p.points)} points, "
            f"{len(p.writable)} writable"
        )
    if not args.files:  # the meter families (P1, HomeWizard, Envoy) live in profiles/meters/
        from .meters import load_meter_profile, meter_profile_names

        for key in meter_profile_names():
            try:
                m = load_meter_profile(key)
            except ProfileError as exc:
                print(f"error: {exc}", file=sys.stderr)
                bad += 1
                continue
            count = len(m.points) + len(m.derived)
            print(f"{m.key:16} {m.maker:10} {','.join(m.transports):24} {count} points (meter)")
    return 1 if bad else 0


def _scan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hosts", default="", help="hosts to scan: 192.168.1.10, 192.168.1.10-40 or 192.168.1.0/24")
    p.add_argument("--ports", default="502,1502,8899", help="TCP ports, comma separated")
    p.add_argument("--serial", default="", help="serial ports for RTU, comma separated (e.g. /dev/ttyUSB0)")
    p.add_argument("--bauds", default="9600,19200,115200", help="baud rates for RTU, comma separated")
    p.add_argument("--units", default="1,3,126,247", help="unit ids to try, comma separated")
    p.add_argument("--rate", type=float, default=20.0, help="probes per second at most")
    p.add_argument("--timeout", type=float, default=0.5, help="seconds to wait for an answer")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--mdns", action="store_true", help="also list HomeWizard, Envoy and Ohm gateways found by mDNS")
    p.add_argument("--mdns-interface", default="", help="IPv4 address to browse mDNS on (default: every interface)")
    p.add_argument("--mdns-wait", type=float, default=3.0, help="seconds to listen for mDNS announcements")


def _progress(s: object) -> None:
    print(f"\rprobed {s.done}/{s.total}, found {len(s.found)}", end="", file=sys.stderr, flush=True)  # type: ignore[attr-defined]


@subcommand("scan", "discover Modbus devices on hosts/ports or serial ports and suggest profiles", _scan_args)
def cmd_scan(args: argparse.Namespace) -> int:
    """Run one scan in a private engine and print what answered."""
    from server.engine import Engine

    from .discovery import Scan

    try:
        units = [int(u) for u in args.units.split(",") if u]
        extra = []
        if args.mdns:
            from . import mdns

            where = [args.mdns_interface] if args.mdns_interface else None
            extra.append(lambda: mdns.browse(args.mdns_wait, where))
        if args.hosts:
            ports = [int(p) for p in args.ports.split(",") if p]
            make = lambda eng, **kw: Scan.tcp(eng, args.hosts.split(","), ports, **kw)  # noqa: E731
        elif args.serial:
            bauds = [int(b) for b in args.bauds.split(",") if b]
            make = lambda eng, **kw: Scan.serial(eng, args.serial.split(","), bauds, **kw)  # noqa: E731
        elif args.mdns:
            make = lambda eng, timeout, **kw: Scan(eng, [], **kw)  # noqa: E731 - nothing to probe: no timeout
        else:
            print("error: give --hosts or --serial (and/or --mdns)", file=sys.stderr)
            return 2
        engine = Engine(workers=2)
        scan = make(engine, units=units, rate=args.rate, timeout=args.timeout, on_progress=_progress, extra=extra)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    engine.start_thread()
    try:
        scan.start()
        while not scan.finished.wait(0.2):
            pass
    except KeyboardInterrupt:
        scan.cancel()
        scan.finished.wait(5)
    finally:
        engine.stop()
        engine.wait_stopped(5)
    print(file=sys.stderr)
    if args.json:
        print(json.dumps([f.as_dict() for f in scan.found], indent=2))
    else:
        for f in scan.found:
            where = f"{f.device}@{f.baudrate}" if f.device else f"{f.host}:{f.port}"
            if f.source == "mdns":
                note = f" - {f.note}" if f.note else ""
                print(f"{where} mDNS {f.name!r} {f.manufacturer} {f.model}: profile {f.profile or '-'}{note}")
                continue
            who = f" {f.manufacturer} {f.model}".rstrip() if f.sunspec else ""
            print(f"{where} unit {f.unit_id}: profile {f.profile or '?'} (score {f.score:g}){who}")
    return 0
