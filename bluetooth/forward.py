"""HTTP calls to the `server` REST API with the admin token (blocking: always run in an engine worker)."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from server.api.tokens import load_or_create

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_RESPONSE = 60 * 1024


class ForwardError(Exception):
    """The server could not be asked: status and code for the BLE reply."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail

    def reply(self) -> dict[str, Any]:
        """As an Ohm channel error message."""
        return {"status": self.status, "error": self.code, "detail": self.detail}


@dataclass(frozen=True)
class Reply:
    """The server's status and body (JSON, or text when it is not JSON)."""

    status: int
    body: Any


class Forwarder:
    """Calls `server` over HTTP with the admin token read from the shared data dir."""

    def __init__(self, base_url: str, data_dir: Path, timeout: float = 20.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"server URL must be http://host:port, got {base_url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.data_dir = Path(data_dir)
        self.timeout = timeout

    def admin_token(self) -> str:
        """The admin token (made on first boot by whichever service starts first; same file, same logic)."""
        return load_or_create(self.data_dir)[0].admin

    def call(self, method: str, path: str, body: Any = None) -> Reply:
        """One request; raises ForwardError when the server cannot be reached or answers nonsense."""
        if method not in METHODS:
            raise ForwardError(400, "bad_request", f"method must be one of {', '.join(METHODS)}")
        if (
            not isinstance(path, str)
            or not path.startswith("/api/")
            or ".." in path
            or not (path.isascii() and path.isprintable())
            or " " in path
        ):
            raise ForwardError(400, "bad_path", "only paths under /api/ are forwarded")
        try:
            token = self.admin_token()
        except (OSError, ValueError) as exc:
            raise ForwardError(502, "server_unreachable", f"no API token: {exc}") from None
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read(MAX_RESPONSE + 1)
        except TimeoutError:
            raise ForwardError(504, "server_timeout", f"the server did not answer in {self.timeout:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ForwardError(
                502, "server_unreachable", f"cannot reach the server: {exc.__class__.__name__}"
            ) from None
        finally:
            conn.close()
        if len(raw) > MAX_RESPONSE:
            raise ForwardError(502, "response_too_large", f"the server's answer is over {MAX_RESPONSE} bytes")
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", errors="replace")
        return Reply(resp.status, parsed)
