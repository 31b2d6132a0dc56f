"""HomeWizard Wi-Fi P1 meter simulator: local API v1 (`/api`, `/api/v1/data`) on 127.0.0.1, with faults.

Also the base of the Envoy simulator: a stdlib ThreadingHTTPServer answering GET paths from a dict of
JSON documents, with faults settable while running:
  error     HTTP 500 on every request
  denied    HTTP 401 (HomeWizard answers 403 with the local API switched off; Envoy 401 for a bad token)
  slow      the answer comes after `delay` seconds (longer than a client's timeout)
  garbage   200 with a body that is not JSON

    python -m modbus_slave.homewizard --port 0
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .signals import wait_for_signal

FAULTS = ("error", "denied", "slow", "garbage")

# The example of HomeWizard's API v1 documentation for an HWE-P1 on a DSMR 5 meter (values as published;
# the unique ids shortened), with a gas and a water meter on the M-Bus.
HWE_P1_INFO: dict[str, Any] = {
    "product_type": "HWE-P1",
    "product_name": "P1 meter",
    "serial": "3c39e7aabbcc",
    "firmware_version": "4.19",
    "api_version": "v1",
}
HWE_P1_DATA: dict[str, Any] = {
    "wifi_ssid": "My Wi-Fi",
    "wifi_strength": 100,
    "smr_version": 50,
    "meter_model": "ISKRA  2M550T-101",
    "unique_id": "00112233445566778899AABBCCDDEEFF",
    "active_tariff": 2,
    "total_power_import_kwh": 13779.338,
    "total_power_import_t1_kwh": 10830.511,
    "total_power_import_t2_kwh": 2948.827,
    "total_power_export_kwh": 1234.111,
    "total_power_export_t1_kwh": 1000.0,
    "total_power_export_t2_kwh": 234.111,
    "active_power_w": -543,
    "active_power_l1_w": -676,
    "active_power_l2_w": 133,
    "active_power_l3_w": 0,
    "active_current_l1_a": -4,
    "active_current_l2_a": 2,
    "active_current_l3_a": 0,
    "active_voltage_l1_v": 230.111,
    "active_voltage_l2_v": 230.222,
    "active_voltage_l3_v": 230.333,
    "active_frequency_hz": 50,
    "any_power_fail_count": 4,
    "long_power_fail_count": 5,
    "total_gas_m3": 1122.333,
    "gas_timestamp": 210314112233,
    "external": [
        {"unique_id": "FFEEDDCC", "type": "gas_meter", "timestamp": 230125220957, "value": 111.222, "unit": "m3"},
        {"unique_id": "AABBCCDD", "type": "water_meter", "timestamp": 230125220957, "value": 222.333, "unit": "m3"},
    ],
}


class JsonHttpSimulator:
    """Serves JSON documents by path on 127.0.0.1 (optionally over TLS), with faults; records requests."""

    def __init__(self, documents: dict[str, Any], *, fault: str | None = None, delay: float = 3.0) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"fault: one of {', '.join(FAULTS)}")
        self.documents = documents
        self.fault = fault
        self.delay = delay
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers) of every request
        self.port = 0
        self.scheme = "http"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[Any] = set()

    def authorised(self, headers: dict[str, str]) -> bool:
        """Whether a request may be answered (subclasses check tokens)."""
        return True

    def start(self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None) -> JsonHttpSimulator:
        """Listen on host:port (loopback; 0 = a free port) and answer in a thread."""
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                sim.requests.append((self.path, headers))
                fault = sim.fault
                if fault == "slow":
                    time.sleep(sim.delay)
                if fault == "error":
                    return self._send(500, b'{"error": "internal"}')
                if fault == "denied" or not sim.authorised(headers):
                    return self._send(401, b'{"error": "unauthorized"}')
                doc = sim.documents.get(self.path.split("?", 1)[0])
                if doc is None:
                    return self._send(404, b'{"error": "not found"}')
                if fault == "garbage":
                    return self._send(200, b"<html>not json</html>")
                self._send(200, json.dumps(doc() if callable(doc) else doc).encode())

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests read `requests`

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def process_request(self, request: Any, client_address: Any) -> None:
                sim._connections.add(request)  # closed by stop(): a stopped device drops its keep-alive links
                super().process_request(request, client_address)

            def finish_request(self, request: Any, client_address: Any) -> None:
                if tls is not None:  # the TLS handshake in the connection's own thread, never in accept()
                    request.settimeout(5.0)
                    try:
                        request = tls.wrap_socket(request, server_side=True)
                    except (OSError, ssl.SSLError):
                        return
                    sim._connections.add(request)  # the TLS socket took over the plain one's descriptor
                super().finish_request(request, client_address)

        server = Server((host, port), Handler)
        self.scheme = "https" if tls is not None else "http"
        self._server, self.port = server, server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already gone
            conn.close()
        if self._thread is not None:
            self._thread.join(timeout=2)


class HomeWizardSimulator(JsonHttpSimulator):
    """An HWE-P1 with the documented readings (`data` may be changed while running)."""

    def __init__(self, data: dict[str, Any] | None = None, **kw: Any) -> None:
        self.data = dict(data or HWE_P1_DATA)
        super().__init__({"/api": dict(HWE_P1_INFO), "/api/v1/data": lambda: self.data}, **kw)


def main(argv: list[str] | None = None) -> int:
    """Run a HomeWizard P1 simulator until interrupted."""
    ap = argparse.ArgumentParser(prog="python -m modbus_slave.homewizard", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fault", choices=FAULTS)
    args = ap.parse_args(argv)
    sim = HomeWizardSimulator(fault=args.fault).start(args.host, args.port)
    print(f"HomeWizard P1 http://{args.host}:{sim.port}/api", flush=True)
    return wait_for_signal(sim.stop)


if __name__ == "__main__":
    sys.exit(main())
