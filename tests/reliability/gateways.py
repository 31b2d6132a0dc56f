"""Real gateway processes for the crash tests: a zygote that forks `python -m server run` children, and
readers of what a gateway has committed (journal and outbox) straight from its SQLite files."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ZYGOTE = Path(__file__).with_name("zygote.py")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Zygote:
    """Forks complete gateway processes on request (see zygote.py); ended with close()."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ZYGOTE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.live: set[int] = set()
        ready = self._read()
        assert "ready" in ready, ready

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the gateway zygote died")
        return json.loads(line)

    def _ask(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def spawn(self, env: dict[str, str], log: Path) -> int:
        """Start a gateway with these OHM_* variables; returns its pid."""
        pid = int(self._ask({"op": "spawn", "env": env, "log": str(log)})["pid"])
        self.live.add(pid)
        return pid

    def kill(self, pid: int, sig: int = signal.SIGKILL) -> int:
        """Send `sig` and reap the child; returns its wait status."""
        os.kill(pid, sig)
        status = int(self._ask({"op": "reap", "pid": pid})["status"])
        self.live.discard(pid)
        return status

    def close(self) -> None:
        """Kill any child still running, then end the zygote."""
        for pid in list(self.live):
            try:
                self.kill(pid)
            except (ProcessLookupError, RuntimeError):
                pass
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def http(port: int, method: str, path: str, token: str | None = None, body: Any = None, timeout: float = 5.0) -> Any:
    """One API call; returns (status, parsed JSON or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw[:1] in (b"{", b"[") else None)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, (json.loads(raw) if raw[:1] in (b"{", b"[") else None)


def wait_healthy(port: int, timeout: float = 15.0, log: Path | None = None) -> float:
    """Wait until /health answers 200; returns the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if http(port, "GET", "/health", timeout=1.0)[0] == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.02)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else "(no log)"
    raise AssertionError(f"gateway API on {port} not healthy within {timeout} s; log:\n{tail}")


def _records(token: bytes) -> list[dict[str, Any]]:
    body = token.split(b".")[1]
    return json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))["records"]


def committed_readings(data_dir: Path) -> set[tuple[str, float]]:
    """(device, time) of every reading the gateway has committed and not yet had acknowledged by the broker.

    Read from another connection, so only committed transactions count: the journal (readings taken,
    not yet batched) and the telemetry rows of the outbox (signed, not yet acknowledged).
    """
    path = data_dir / "outbox.sqlite"
    if not path.exists():
        return set()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        out: set[tuple[str, float]] = set()
        for (rec,) in db.execute("SELECT rec FROM journal"):
            r = json.loads(rec)
            out.add((r["d"], float(r["t"])))
        for (payload,) in db.execute("SELECT payload FROM outbox WHERE topic LIKE '%/telemetry'"):
            out.update((r["d"], float(r["t"])) for r in _records(payload))
        return out
    except sqlite3.OperationalError:  # first boot: the tables are not made yet
        return set()
    finally:
        db.close()


def outbox_state(data_dir: Path) -> dict[str, int]:
    """Integrity, waiting rows, journal rows and the last sequence number committed."""
    db = sqlite3.connect(f"file:{data_dir / 'outbox.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        ok = db.execute("PRAGMA integrity_check").fetchone()[0]
        rows = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        journal = db.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
        meta = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        return {"ok": ok == "ok", "rows": rows, "journal": journal, "committed": int(meta[0]) - 1 if meta else 0}
    finally:
        db.close()
