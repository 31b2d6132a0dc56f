"""A loopback HTTP front for the real server that answers only the endpoints the test's server cannot answer.

The BLE service forwards to this instead of the server. Wi-Fi scan/connect, owner initialize and the provisioning
state are answered here while the server lacks the route or the test gateway runs without the service behind it
(Wi-Fi needs NetworkManager); everything else passes through unchanged (method, path, auth, body).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.api.routes import all_routes
from tests.support import loopback_http

LocalAnswer = Callable[[Any], tuple[int, Any]]


def server_paths() -> set[str]:
    """'METHOD /path' of every route the server offers now."""
    return {f"{r.method} {r.path}" for r in all_routes()}


@dataclass
class Standins:
    """What the stand-in endpoints were asked."""

    joined: list[tuple[str, str]] = field(default_factory=list)
    owner: list[dict[str, Any]] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)  # which requests were answered here, not by the server
    window_open: bool = True  # the provisioning window as the stand-in reports it
    passed: list[str] = field(default_factory=list)  # "METHOD /path" of each request passed on to the server
    delay: dict[str, float] = field(default_factory=dict)  # "METHOD /path" -> seconds to hold the answer

    def answers(self, services: Mapping[str, Any]) -> dict[str, LocalAnswer]:
        """Local answers for the endpoints the server cannot answer (route missing, or its service not attached)."""

        def scan(body: Any) -> tuple[int, Any]:
            nets = [{"ssid": "HomeNet", "signal": 80, "security": "wpa2"}, {"ssid": "Cafe", "signal": 30}]
            return 200, {"networks": nets}

        def join(body: Any) -> tuple[int, Any]:
            self.joined.append((body["ssid"], body["password"]))
            return 200, {"ssid": body["ssid"], "ip": "127.0.0.1"}

        def owner(body: Any) -> tuple[int, Any]:
            self.owner.append(body)
            return 200, {"owner": body["owner"]}

        def provisioning(body: Any) -> tuple[int, Any]:
            return 200, {
                "window_open": self.window_open,
                "closes_in_s": 300 if self.window_open else 0,
                "provisioned": False,
            }

        wanted = {  # endpoint -> (answer, the gateway service it needs)
            "POST /api/wifi/scan": (scan, "wifi"),
            "POST /api/wifi/connect": (join, "wifi"),
            "POST /api/owner/initialize": (owner, "system"),
            "GET /api/provisioning": (provisioning, "provisioning"),
        }
        have = server_paths()
        return {key: fn for key, (fn, svc) in wanted.items() if key not in have or svc not in services}


@contextlib.contextmanager
def standin_api(target: str, standins: Standins, services: Mapping[str, Any]) -> Iterator[str]:
    """Serve on 127.0.0.1 and a free port in front of `target`; yields the URL to give the BLE service."""
    local = standins.answers(services)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            key = f"{self.command} {self.path.split('?')[0]}"
            if key in local:
                standins.answered.append(key)
                time.sleep(standins.delay.get(key, 0.0))  # this server thread only: a slow endpoint
                status, body = local[key](json.loads(raw or b"null"))
                self._reply(status, json.dumps(body).encode(), "application/json")
                return
            standins.passed.append(key)
            time.sleep(standins.delay.get(key, 0.0))
            req = urllib.request.Request(target + self.path, data=raw or None, method=self.command)
            for name in ("Authorization", "Content-Type"):
                if self.headers.get(name):
                    req.add_header(name, self.headers[name])
            try:
                with urllib.request.urlopen(req, timeout=20) as resp:
                    self._reply(resp.status, resp.read(), resp.headers.get("Content-Type", ""))
            except urllib.error.HTTPError as err:
                self._reply(err.code, err.read(), err.headers.get("Content-Type", ""))

        def _reply(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            if ctype:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with loopback_http(Handler, "client-standin-api") as url:
        yield url
