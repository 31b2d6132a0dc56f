"""Command line of the BLE service: `python -m bluetooth [run|pop] [options]`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from server.config import ConfigError

from . import pop as popcode
from .config import load

DESCRIPTION = """\
Ohm BLE provisioning service: Improv Wi-Fi and Ohm's encrypted request channel over GATT,
forwarding to the gateway's REST API. Settings come from OHM_* environment variables
(OHM_DATA_DIR, OHM_SERVER_URL, OHM_BLE_BACKEND, OHM_BLE_TRANSPORT, OHM_BLE_BUTTON_PIN, ...)
and these options.
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="the gateway's data dir, shared with the server (env OHM_DATA_DIR)")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run a subcommand."""
    parser = argparse.ArgumentParser(prog="python -m bluetooth", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the BLE service (the default)")
    _common(run)
    run.add_argument("--server-url", help="the server's REST API (env OHM_SERVER_URL)")
    run.add_argument("--backend", choices=("auto", "bless", "bumble"), help="BLE backend (env OHM_BLE_BACKEND)")
    run.add_argument("--transport", help="bumble HCI transport, e.g. usb:0 or tcp-client:127.0.0.1:P")
    run.add_argument("--button-pin", type=int, help="GPIO pin of the provisioning button (-1 = none)")
    run.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    run.add_argument("--run-for", type=float, metavar="SECONDS", help="stop by itself after SECONDS")
    show = sub.add_parser("pop", help="show the proof-of-possession code for the label (made on first use)")
    _common(show)
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["run", *(argv or sys.argv[1:])])
    try:
        if args.command == "pop":
            return cmd_pop(args)
        return cmd_run(args)
    except ConfigError as exc:
        print(f"ohm-ble: {exc}", file=sys.stderr)
        return 2


def cmd_pop(args: argparse.Namespace) -> int:
    """Print the label code."""
    settings = load(data_dir=args.data_dir)
    try:
        code, created = popcode.load_or_create(settings.data_dir)
    except (OSError, ValueError) as exc:
        print(f"ohm-ble: {exc}", file=sys.stderr)
        return 1
    print(popcode.label(code))
    if created:
        print(f"(new code, kept in {settings.data_dir / popcode.POP_FILE})", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT (or --run-for)."""
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load(
        data_dir=args.data_dir,
        server_url=args.server_url,
        backend=args.backend,
        transport=args.transport,
        button_pin=args.button_pin,
    )
    from .backends import create
    from .service import BleService

    try:
        if (name := _backend_name(settings.backend)) == "bumble":
            backend = create("bumble", transport=settings.transport)
        else:
            backend = create(name, adapter=settings.adapter)
        service = BleService(settings, backend)
    except (OSError, ValueError, ImportError) as exc:
        print(f"ohm-ble: cannot start: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        service.start()
    except Exception as exc:  # noqa: BLE001 - one clear line for the operator, not a trace
        print(f"ohm-ble: the {backend.name} backend did not start: {exc}", file=sys.stderr)
        service.stop()
        return 1
    stop.wait(args.run_for)
    service.stop()
    return 0


def _backend_name(name: str) -> str:
    from .backends import resolve

    return resolve(name)


if __name__ == "__main__":
    sys.exit(main())
