"""`python -m server consume`: the reference consumer as a command."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from server.cli import setup_logging, subcommand
from server.crypto.keys import load_public_key

from .consumer import Consumer, ConsumerSettings, ConsumerStore


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1883, help="broker port")
    p.add_argument("--db", type=Path, default=Path("consumer.sqlite"), help="SQLite file for verified readings")
    p.add_argument("--prefix", default="ohm", help="topic prefix (default ohm)")
    p.add_argument("--client-id", default="ohm-consumer", help="MQTT client id (its session persists)")
    p.add_argument("--username", default="", help="MQTT user name")
    p.add_argument("--password-env", default="OHM_CONSUMER_PASSWORD", help="environment variable with the password")
    p.add_argument("--tls", action="store_true", help="use TLS")
    p.add_argument("--ca-file", default="", help="CA certificate")
    p.add_argument("--cert-file", default="", help="client certificate (mutual TLS)")
    p.add_argument("--key-file", default="", help="client key (mutual TLS)")
    p.add_argument("--key", action="append", default=[], metavar="GATEWAY=FILE", help="pin a gateway's public key")
    p.add_argument("--run-for", type=float, metavar="SECONDS", help="stop after SECONDS")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


@subcommand("consume", "reference consumer: subscribe for a fleet, verify, de-duplicate, store in SQLite", _args)
def cmd_consume(args: argparse.Namespace) -> int:
    """Run the consumer until SIGINT/SIGTERM or --run-for."""
    import os

    setup_logging(args.log_level)
    trusted = {}
    for pin in args.key:
        gw, sep, path = pin.partition("=")
        try:
            if not sep:
                raise ValueError("--key wants GATEWAY=FILE")
            trusted[gw] = load_public_key(Path(path).read_text())
        except (OSError, ValueError) as exc:
            print(f"ohm consume: {pin}: {exc}", file=sys.stderr)
            return 2
    settings = ConsumerSettings(
        host=args.host,
        port=args.port,
        prefix=args.prefix,
        client_id=args.client_id,
        username=args.username,
        password=os.environ.get(args.password_env, ""),
        tls=args.tls,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
    )
    store = ConsumerStore(args.db)
    consumer = Consumer(settings, store, trusted or None).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    log = logging.getLogger("ohm.consumer")
    log.info("consuming %s/+/telemetry from %s:%d into %s", args.prefix, args.host, args.port, args.db)
    deadline = None if args.run_for is None else time.monotonic() + args.run_for
    last = dict(consumer.counts)
    while not stop.wait(5.0 if deadline is None else max(0.0, min(5.0, deadline - time.monotonic()))):
        if consumer.counts != last:
            last = dict(consumer.counts)
            log.info("consumer: %s", last)
        if deadline is not None and time.monotonic() >= deadline:
            break
    consumer.stop()
    store.close()
    print(f"consumer: {consumer.counts}", flush=True)
    return 0
