"""`python -m server provisioning open|close|status`: ask the running gateway over its local API (loopback)."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
from pathlib import Path
from typing import Any

from server.cli import subcommand
from server.config import ConfigError, load


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("open", "close", "status"), help="open or close the window, or show it")
    p.add_argument("--seconds", type=float, help="how long the window stays open (1-900; default 300)")
    p.add_argument("--config", type=Path, default=os.environ.get("OHM_CONFIG"), help="TOML settings file")
    p.add_argument("--data-dir", type=Path, help="the gateway's data directory (holds the admin token)")


def _token(data_dir: Path) -> str:
    path = data_dir / "api_tokens.json"
    try:
        token = json.loads(path.read_text(encoding="utf-8"))["admin"]
    except FileNotFoundError:
        raise SystemExit(f"ohm: no {path}: is the gateway running with its API (api.port) on this data dir?") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"ohm: cannot read the admin token from {path}: {exc}") from None
    return str(token)


def call(host: str, port: int, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One API request; (status, parsed JSON)."""
    conn = http.client.HTTPConnection(host, port, timeout=15)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {token}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


@subcommand("provisioning", "open, close or show the provisioning window of the running gateway", _args)
def cmd_provisioning(args: argparse.Namespace) -> int:
    """Talk to the running gateway's API on this machine (the window lives there, not in this process)."""
    try:
        config = load(args.config, overrides={"data_dir": args.data_dir})
    except ConfigError as exc:
        print(f"ohm: {exc}", file=sys.stderr)
        return 2
    if args.seconds is not None and not 1 <= args.seconds <= 900:
        print("ohm: --seconds must be 1-900", file=sys.stderr)
        return 2
    port = int(config["api.port"])
    if port == 0:
        print("ohm: the API is off (api.port = 0); the window cannot be reached", file=sys.stderr)
        return 2
    host = str(config["api.host"])
    host = "127.0.0.1" if host in ("", "0.0.0.0") else host
    token = _token(Path(config.data_dir))
    method, path, body = {
        "open": ("POST", "/api/provisioning/window", {} if args.seconds is None else {"seconds": args.seconds}),
        "close": ("DELETE", "/api/provisioning/window", None),
        "status": ("GET", "/api/provisioning", None),
    }[args.action]
    try:
        status, answer = call(host, port, token, method, path, body)
    except OSError as exc:
        print(f"ohm: no gateway API at {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if status >= 400:
        print(f"ohm: {status}: {(answer or {}).get('detail', answer)}", file=sys.stderr)
        return 1
    state = "open" if answer["window_open"] else "closed"
    left = f", closes in {answer['closes_in_s']:.0f} s" if answer["window_open"] else ""
    prov = "provisioned" if answer["provisioned"] else f"not provisioned: {answer['reason']}"
    print(f"provisioning window {state}{left}; {prov}")
    return 0
