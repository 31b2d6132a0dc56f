"""A small backend: `<prefix>/+/telemetry` (and results, events) -> verify -> de-duplicate -> SQLite.

It keeps a persistent MQTT 5 session (fixed client id, session expiry), so with a broker that
persists sessions nothing published while it was away is lost. Records are keyed by
(gateway, seq): a batch delivered twice is stored once.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from server.crypto.jws import JwsError
from server.telemetry.verify import DUPLICATE, NEW, Ledger, authenticate
from server.uplink.credentials import apply_credentials

log = logging.getLogger("ohm.consumer")

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    gateway TEXT NOT NULL, seq INTEGER NOT NULL, device TEXT NOT NULL, ts REAL NOT NULL, online INTEGER NOT NULL,
    data TEXT NOT NULL, received REAL NOT NULL, PRIMARY KEY (gateway, seq)
);
CREATE TABLE IF NOT EXISTS batches (
    gateway TEXT NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL, hash TEXT NOT NULL, synced INTEGER,
    sent REAL, received REAL NOT NULL, problems TEXT, PRIMARY KEY (gateway, first)
);
CREATE TABLE IF NOT EXISTS rejected (received REAL NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (gateway TEXT NOT NULL, id TEXT, ok INTEGER, body TEXT NOT NULL, received REAL);
CREATE TABLE IF NOT EXISTS events (gateway TEXT NOT NULL, kind TEXT, body TEXT NOT NULL, received REAL);
"""


class ConsumerStore:
    """SQLite store of verified readings; INSERT OR IGNORE on (gateway, seq) de-duplicates."""

    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def add_batch(self, payload: dict[str, Any], h: str, problems: list[str], now: float) -> int:
        """Store a verified batch; returns how many readings were new."""
        gw = payload["gw"]
        rows = [
            (gw, r["s"], str(r.get("d", "")), float(r.get("t", 0)), 1 if r.get("on") else 0, json.dumps(r), now)
            for r in payload["records"]
        ]
        with self._lock:
            self._db.execute("BEGIN")
            before = self._db.total_changes
            self._db.executemany("INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            new = self._db.total_changes - before
            self._db.execute(
                "INSERT OR IGNORE INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    gw,
                    payload["seq"][0],
                    payload["seq"][1],
                    h,
                    int(bool(payload.get("synced"))),
                    payload.get("sent"),
                    now,
                    "; ".join(problems) or None,
                ),
            )
            self._db.execute("COMMIT")
        return new

    def add_rejected(self, topic: str, reason: str, now: float) -> None:
        """Remember a message that did not verify."""
        with self._lock:
            self._db.execute("INSERT INTO rejected VALUES (?, ?, ?)", (now, topic, reason))

    def add_result(self, payload: dict[str, Any], now: float) -> None:
        """Store a verified command result."""
        with self._lock:
            self._db.execute(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?)",
                (payload["gw"], payload.get("id"), int(bool(payload.get("ok"))), json.dumps(payload), now),
            )

    def add_event(self, payload: dict[str, Any], now: float) -> None:
        """Store a verified event."""
        with self._lock:
            self._db.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?)", (payload["gw"], payload.get("kind"), json.dumps(payload), now)
            )

    def sequences(self, gateway: str) -> list[int]:
        """Stored sequence numbers of a gateway, ascending."""
        with self._lock:
            return [
                r[0] for r in self._db.execute("SELECT seq FROM readings WHERE gateway = ? ORDER BY seq", (gateway,))
            ]

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read query (tests, tools)."""
        with self._lock:
            return list(self._db.execute(sql, args))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


@dataclass
class ConsumerSettings:
    """Where to connect and how."""

    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "ohm"
    client_id: str = "ohm-consumer"
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


class Consumer:
    """Subscribes, verifies with a Ledger, stores into a ConsumerStore."""

    def __init__(
        self,
        settings: ConsumerSettings,
        store: ConsumerStore,
        trusted: dict[str, ec.EllipticCurvePublicKey] | None = None,
        clock: Any = None,
    ) -> None:
        import time

        self.s = settings
        self.store = store
        self.ledger = Ledger(trusted)
        self.trusted = trusted
        self._time = (clock or time).time
        self.counts = {"new": 0, "duplicate": 0, "rejected": 0, "readings": 0, "results": 0, "events": 0}
        self.connected = threading.Event()
        self._lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=mqtt.MQTTv5)
        apply_credentials(c, settings)
        c.reconnect_delay_set(0.1, 2)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a: self.connected.clear()
        c.on_message = self._on_message
        self.client = c

    def start(self) -> Consumer:
        """Connect (persistent session) and run paho's thread."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(self.s.host, self.s.port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        """Disconnect and stop the thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            log.error("consumer connect refused: %s", rc)
            return
        p = self.s.prefix
        client.subscribe([(f"{p}/+/telemetry", 1), (f"{p}/+/cmd/result", 1), (f"{p}/+/events", 1)])
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # A standalone tool: verifying and storing on paho's thread is fine here (not the gateway).
        try:
            self.handle(msg.topic, bytes(msg.payload))
        except Exception:
            log.exception("consumer could not handle a message on %s", msg.topic)

    def handle(self, topic: str, payload: bytes) -> str:
        """Verify and store one message; returns new, duplicate or rejected."""
        now = self._time()
        token = payload.decode("ascii", errors="replace")
        leaf = topic.split("/", 2)[-1] if topic.count("/") >= 2 else ""
        if leaf in ("cmd/result", "events"):
            typ = "ohm.cmd.result" if leaf == "cmd/result" else "ohm.event"
            try:
                _, body = authenticate(token, self.trusted, typ=typ)
            except JwsError as exc:
                self.store.add_rejected(topic, str(exc), now)
                with self._lock:
                    self.counts["rejected"] += 1
                return "rejected"
            (self.store.add_result if leaf == "cmd/result" else self.store.add_event)(body, now)
            with self._lock:
                self.counts["results" if leaf == "cmd/result" else "events"] += 1
            return NEW
        with self._lock:
            verdict = self.ledger.check(token)
        if verdict.status == NEW and verdict.payload is not None and verdict.hash is not None:
            if topic.split("/")[1:2] != [verdict.gateway]:
                verdict.problems.append("published under another gateway's topic")
            new = self.store.add_batch(verdict.payload, verdict.hash, verdict.problems, now)
            with self._lock:
                self.counts["new"] += 1
                self.counts["readings"] += new
            return NEW
        if verdict.status == DUPLICATE:
            with self._lock:
                self.counts["duplicate"] += 1
            return DUPLICATE
        self.store.add_rejected(topic, "; ".join(verdict.problems), now)
        with self._lock:
            self.counts["rejected"] += 1
        return "rejected"
