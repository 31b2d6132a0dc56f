"""Blocking HTTP clients for meters with a local JSON API: HomeWizard P1 (API v1) and Enphase Envoy.

The stdlib http.client is enough (GET with a keep-alive connection and a timeout), so no extra
dependency. Every failure becomes a DeviceIOError with a short reason; the Envoy token is only
ever put in the Authorization header of requests to the configured host, never in a message.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import ssl
from typing import Any

from .transport import DeviceIOError, Link

log = logging.getLogger("ohm.devices.http")

MAX_BODY = 1 << 20  # a real /production.json is ~4 KB; anything near a megabyte is not a meter


class JsonHttp:
    """GET JSON from one host over one keep-alive connection (reopened after an error)."""

    def __init__(
        self, host: str, port: int, timeout: float, *, tls: bool = False, token: str = "", pin: str = ""
    ) -> None:
        self.host, self.port, self.timeout, self.tls = host, port, timeout, tls
        self._token = token
        self.pin = pin  # expected certificate SHA-256; empty: take the first one seen (trust on first use)
        self.new_pin: str | None = None  # set when this client pinned a certificate on first use
        self._conn: http.client.HTTPConnection | None = None
        self.where = f"{'https' if tls else 'http'}://{host}:{port}"

    def __repr__(self) -> str:
        return f"JsonHttp({self.where})"  # never the token

    def get(self, path: str, *, missing_ok: bool = False) -> Any:
        """The parsed JSON at `path`; None for 404 when `missing_ok`; DeviceIOError for anything else odd."""
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            conn = self._connection()
            conn.request("GET", path, headers=headers)
            reply = conn.getresponse()
            body = reply.read(MAX_BODY + 1)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            raise DeviceIOError(f"{self.where}{path}: {reason}") from None
        if reply.status == 404 and missing_ok:
            return None
        if reply.status in (401, 403):
            hint = "the token was refused (expired? get a new one from the owner)" if self._token else "needs a token"
            raise DeviceIOError(f"{self.where}{path}: HTTP {reply.status}, {hint}")
        if reply.status != 200:
            raise DeviceIOError(f"{self.where}{path}: HTTP {reply.status}")
        if len(body) > MAX_BODY:
            self.close()
            raise DeviceIOError(f"{self.where}{path}: reply larger than {MAX_BODY} bytes")
        try:
            return json.loads(body)
        except ValueError:
            raise DeviceIOError(f"{self.where}{path}: reply is not JSON") from None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.tls:
                # The Envoy serves HTTPS with a self-signed certificate made on the device: there is no
                # chain to verify. The token only goes to the host the owner configured.
                # Pinning the certificate (before any request, so before the token is sent) stands in for it.
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=ctx)
                conn.connect()
                der = conn.sock.getpeercert(binary_form=True) if conn.sock is not None else None
                seen = hashlib.sha256(der or b"").hexdigest()
                if not self.pin:
                    self.pin = self.new_pin = seen
                elif seen != self.pin:
                    conn.close()
                    raise DeviceIOError(
                        f"certificate changed (pinned {self.pin[:16]}..., now {seen[:16]}...): not sending the token; "
                        "if the gateway was replaced, clear tls_pin to trust its new certificate"
                    )
                self._conn = conn
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        """Drop the connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class _MeterClient:
    """Shared parts: meters have no registers, and close drops the HTTP connection."""

    http: JsonHttp

    def read(self, fc: int, address: int, count: int, unit: int) -> list[int]:
        """HTTP meters have no registers."""
        raise DeviceIOError("this meter has no Modbus registers")

    def write(self, address: int, values: list[int], unit: int, fc: int = 16) -> None:
        """HTTP meters are read-only here."""
        raise DeviceIOError("this meter cannot be written")

    def close(self) -> None:
        """Drop the connection."""
        self.http.close()


class HomeWizardClient(_MeterClient):
    """HomeWizard Wi-Fi P1 meter, local API v1: `/api` once (identity), `/api/v1/data` per fetch."""

    def __init__(self, link: Link) -> None:
        self.http = JsonHttp(link.host, link.port or 80, link.timeout)
        info = self.http.get("/api")
        if not isinstance(info, dict) or "product_type" not in info:
            self.close()
            raise DeviceIOError(f"{self.http.where}/api: not a HomeWizard device")
        if str(info.get("api_version", "v1")) != "v1":
            self.close()
            raise DeviceIOError(f"{self.http.where}: API {info.get('api_version')!r}, only v1 is supported")
        self.info = {k: info.get(k) for k in ("product_type", "product_name", "serial", "firmware_version")}

    def fetch(self) -> dict[str, Any]:
        """The current readings document."""
        data = self.http.get("/api/v1/data")
        if not isinstance(data, dict):
            raise DeviceIOError(f"{self.http.where}/api/v1/data: not a JSON object")
        return data


class EnvoyClient(_MeterClient):
    """Enphase Envoy / IQ Gateway: production.json plus the CT meter readings where there are meters."""

    def __init__(self, link: Link) -> None:
        tls = bool(link.secret)  # firmware 7+ (the one that needs a token) serves HTTPS only
        port = link.port or (443 if tls else 80)
        self.http = JsonHttp(link.host, port, link.timeout, tls=tls, token=link.secret, pin=link.tls_pin)
        meters = self.http.get("/ivp/meters", missing_ok=True)
        # eid -> measurementType ("production", "net-consumption", "total-consumption")
        self._meters = {
            m["eid"]: m["measurementType"]
            for m in (meters if isinstance(meters, list) else [])
            if isinstance(m, dict) and "eid" in m and "measurementType" in m and m.get("state", "enabled") == "enabled"
        }

    @property
    def new_pin(self) -> str | None:
        """The certificate fingerprint pinned on first use by this client, if it pinned one."""
        return self.http.new_pin

    def fetch(self) -> dict[str, Any]:
        """One merged document: production.json's lists and {measurementType: reading} under `meters`."""
        doc = self.http.get("/production.json")
        if not isinstance(doc, dict):
            raise DeviceIOError(f"{self.http.where}/production.json: not a JSON object")
        merged: dict[str, Any] = dict(doc)
        if self._meters:
            readings = self.http.get("/ivp/meters/readings", missing_ok=True)
            merged["meters"] = {
                self._meters[r["eid"]]: r
                for r in (readings if isinstance(readings, list) else [])
                if isinstance(r, dict) and r.get("eid") in self._meters
            }
        return merged
