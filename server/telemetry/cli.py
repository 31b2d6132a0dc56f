"""`python -m server verify`: check files of telemetry tokens (one per line) for signature, chain, gaps, duplicates."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from server.cli import subcommand
from server.crypto.keys import load_public_key

from .verify import REJECTED, Ledger


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", type=Path, help="files with one token per line (default: standard input)")
    p.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="GATEWAY=FILE",
        help="pin a gateway's public key (PEM or JWK file); without pins the embedded, self-certifying key is used",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="only the summary, not each problem")


@subcommand("verify", "verify signed telemetry tokens (signature, chain, gaps, duplicates)", _args)
def cmd_verify(args: argparse.Namespace) -> int:
    """Read tokens, verify them, print problems and a summary; exit 1 if anything is wrong."""
    trusted = {}
    for pin in args.key:
        gw, sep, path = pin.partition("=")
        if not sep:
            print(f"ohm verify: --key wants GATEWAY=FILE, got {pin!r}", file=sys.stderr)
            return 2
        try:
            trusted[gw] = load_public_key(Path(path).read_text())
        except (OSError, ValueError) as exc:
            print(f"ohm verify: {path}: {exc}", file=sys.stderr)
            return 2
    ledger = Ledger(trusted or None)
    bad = 0
    sources = args.files or [Path("-")]
    for src in sources:
        try:
            lines = sys.stdin.read().splitlines() if str(src) == "-" else src.read_text().splitlines()
        except OSError as exc:
            print(f"ohm verify: {src}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            verdict = ledger.check(line.strip())
            if verdict.status == REJECTED or verdict.problems:
                bad += 1
                if not args.quiet:
                    print(f"{src}:{n}: {verdict.status}: {'; '.join(verdict.problems)}")
    summary = ledger.summary()
    gaps = sum(len(s["gaps"]) for s in summary.values())
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for gw, s in summary.items():
            print(
                f"{gw}: {s['batches']} batches, {s['records']} records, {s['duplicates']} duplicates, "
                f"{s['rejected']} rejected, {s['chain']} chain breaks, gaps {s['gaps'] or 'none'}"
            )
    return 1 if bad or gaps else 0
