"""The MQTT uplink: one paho client, its network thread only hands work to the engine.

- Connection: MQTT 5 (or 3.1.1 when the broker refuses 5), TLS / mutual TLS, user/password,
  retained `<prefix>/<gw>/status` with a last will of offline, resubscribe on every connect,
  jittered backoff capped at mqtt.backoff_max (paho waits; we set its delay per attempt).
- Drain: rows are reserved on the outbox lane (so two fetches never take the same row),
  published with QoS 1 and deleted on the lane only after their PUBACK. Live rows (recent
  telemetry, command results) go as soon as they exist; older rows are backlog, sent by a
  BACKLOG task under a rate cap and with part of the in-flight window kept free for live data.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from server.crypto.base import Signer
from server.engine import Duplicate, Engine, EngineStopped, Outcome, Task, TaskClass
from server.outbox.service import Outbox
from server.outbox.store import PRIO_RESULT, OutboxStore, Row
from server.statemachine import Event, State
from server.telemetry.envelope import build_result

from .backoff import backoff_delay
from .commands import DEFERRED, CommandFailed, CommandRequest, Rejected, handler_for, parse_command
from .credentials import apply_credentials

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

log = logging.getLogger("ohm.uplink")

UNSUPPORTED_PROTOCOL = (1, 132)  # 3.1.1 CONNACK "unacceptable protocol version" / MQTT 5 reason 0x84
CONNECT_TIMEOUT = 5.0  # seconds from TCP connect to CONNACK before the attempt is abandoned
STALE_INFLIGHT = 120  # seconds without PUBACK while connected before a message is sent again


@dataclass(frozen=True)
class MqttSettings:
    """Everything the uplink needs from the configuration."""

    host: str
    port: int = 0
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    username: str = ""
    password: str = ""
    client_id: str = ""
    prefix: str = "ohm"
    protocol: str = "auto"
    keepalive: int = 30
    inflight: int = 64
    backlog_rate: float = 200.0
    backoff_base: float = 0.5
    backoff_max: float = 10.0
    live_window: float = 20.0  # rows younger than this (seconds) are live data
    command_max_ttl: float = 3600.0

    @property
    def effective_port(self) -> int:
        """The port, defaulting by TLS."""
        return self.port or (8883 if self.tls else 1883)

    def problems(self) -> list[str]:
        """Settings that cannot work, in words."""
        out = []
        if bool(self.cert_file) != bool(self.key_file):
            out.append("mqtt.cert_file and mqtt.key_file go together (mutual TLS needs both)")
        if (self.cert_file or self.ca_file) and not self.tls:
            out.append("mqtt.ca_file/cert_file are set but mqtt.tls is false")
        if self.password and not self.username:
            out.append("mqtt.password is set without mqtt.username")
        return out

    @classmethod
    def from_config(cls, cfg: Any, batch_interval: float) -> MqttSettings:
        """Read the mqtt.* settings."""
        return cls(
            host=cfg["mqtt.host"],
            port=cfg["mqtt.port"],
            tls=cfg["mqtt.tls"],
            ca_file=cfg["mqtt.ca_file"],
            cert_file=cfg["mqtt.cert_file"],
            key_file=cfg["mqtt.key_file"],
            username=cfg["mqtt.username"],
            password=cfg["mqtt.password"],
            client_id=cfg["mqtt.client_id"],
            prefix=cfg["mqtt.topic_prefix"],
            protocol=cfg["mqtt.protocol"],
            keepalive=cfg["mqtt.keepalive"],
            inflight=cfg["mqtt.inflight"],
            backlog_rate=cfg["mqtt.backlog_rate"],
            backoff_max=cfg["mqtt.backoff_max"],
            live_window=max(2.5 * batch_interval, 5.0),
            command_max_ttl=cfg["mqtt.command_max_ttl"],
        )


def _retire(client: mqtt.Client) -> None:
    """Disconnect a paho client, join its thread and close its wake-up socket pair (call off the engine)."""
    client.disconnect()
    client.loop_stop()
    # paho (2.2) closes the socket pair of loop_start() only in __del__: a retired client that something
    # still references (a log record whose exception traceback holds its frames) would keep two descriptors.
    reset = getattr(client, "_reset_sockets", None)
    if reset is not None and getattr(client, "_thread", None) is None:  # not while its thread still runs
        reset()


class Uplink:
    """Owns the paho client; all decisions happen in engine tasks."""

    def __init__(
        self,
        engine: Engine,
        signer: Signer,
        outbox: Outbox,
        settings: MqttSettings,
        *,
        gateway: Any = None,
        backend_key: ec.EllipticCurvePublicKey | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.outbox = outbox
        self.s = settings
        self.gateway = gateway
        self.backend_key = backend_key
        self.gw = signer.device_id
        base = f"{settings.prefix}/{self.gw}"
        self.topics = {leaf: f"{base}/{leaf}" for leaf in ("telemetry", "status", "events", "cmd", "cmd/result")}
        self._rng = rng or random.Random()
        self._protocol = mqtt.MQTTv311 if settings.protocol == "3.1.1" else mqtt.MQTTv5
        self._lock = threading.Lock()
        self._inflight: dict[int, float] = {}  # row id -> wall time reserved (guarded by _lock)
        self._mids: dict[int, int] = {}  # mid -> row id (engine thread only)
        self._acks: deque[tuple[int, bool]] = deque()
        self._parked: set[int] = set()  # rows the broker refused (e.g. ACL); retried after a reconnect
        self._fetching = False
        self._tokens = 0.0
        self._tokens_at = engine.clock.monotonic()
        self._stale_checked = self._tokens_at
        self._refusal_logged = False
        self._attempts = 0  # connect attempts started (paho thread writes, engine reads)
        self._answered = 0  # the last attempt that ended with a CONNACK or a TCP/TLS failure
        self._attempt = 0
        self.connected = False
        self.client: mqtt.Client | None = None
        self.counters = {
            "connects": 0,
            "disconnects": 0,
            "published": 0,
            "acked": 0,
            "refused": 0,
            "commands": 0,
            "rejected": 0,
        }
        self.last_connect_at: float | None = None

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Create the client and let paho's thread connect (and reconnect) in the background."""
        self.client = self._make_client()
        self.client.connect_async(self.s.host, self.s.effective_port, keepalive=self.s.keepalive)
        self.client.loop_start()
        self.engine.every(0.1, self._drain_backlog, kind="uplink.backlog", name="uplink.backlog", cls=TaskClass.BACKLOG)

    def stop(self) -> None:
        """Publish offline status, disconnect cleanly (no will), stop paho's thread."""
        client = self.client
        if client is None:
            return
        if self.connected:
            try:
                info = client.publish(self.topics["status"], self._status("offline"), qos=1, retain=True)
                info.wait_for_publish(timeout=1.0)
            except (RuntimeError, ValueError, OSError):
                log.debug("could not publish offline status at stop")
        client.disable_logger()  # paho logs "not connected" as an error once its socket is closed
        _retire(client)
        self.client = None

    def _make_client(self) -> mqtt.Client:
        s = self.s
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id or self.gw,
            protocol=self._protocol,
            clean_session=None if self._protocol == mqtt.MQTTv5 else True,
        )
        client.enable_logger(logging.getLogger("ohm.uplink.paho"))
        client.max_inflight_messages_set(s.inflight)
        client.max_queued_messages_set(0)
        apply_credentials(client, s)
        client.will_set(self.topics["status"], self._status("offline"), qos=1, retain=True)
        client.reconnect_delay_set(s.backoff_base, s.backoff_max)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _status(self, state: str) -> str:
        return json.dumps(
            {"state": state, "gw": self.gw, "ts": round(self.engine.clock.time(), 3), "jwk": self.signer.public_jwk()}
        )

    # ---- paho callbacks (network thread): only submit engine tasks ---------------------

    def _submit(self, fn: Any, kind: str, cls: TaskClass, **kw: Any) -> None:
        try:
            self.engine.submit(Task(fn, kind=kind, cls=cls, **kw))
        except EngineStopped:
            pass

    def _next_delay(self) -> None:
        """Set paho's wait before its next attempt: jittered, capped (paho itself only doubles)."""
        self._attempt += 1
        delay = backoff_delay(self._attempt, base=self.s.backoff_base, cap=self.s.backoff_max, rng=self._rng)
        if self.client is not None:
            self.client.reconnect_delay_set(delay, delay)

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        self._attempts += 1
        attempt = self._attempts
        try:
            self.engine.submit(
                Task(
                    lambda now: self._check_connack(client, attempt),
                    kind="uplink.connect_watchdog",
                    cls=TaskClass.CONTROL,
                ),
                delay=CONNECT_TIMEOUT,
            )
        except EngineStopped:
            pass

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self._answered = self._attempts
        if rc.is_failure:
            self._next_delay()
            self._submit(lambda now: self._connect_refused(rc), "uplink.connect_refused", TaskClass.CONTROL)
            return
        self._attempt = 0
        self._submit(self._connected, "uplink.connected", TaskClass.CONTROL)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._answered = self._attempts
        self._next_delay()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        # A connection closed before its CONNACK (a cut link, a peer that hangs up) is an answer too: the
        # watchdog is for a broker that stays silent, and must not rebuild the client (or drop to 3.1.1)
        # just because paho's backoff before the next attempt is longer than CONNECT_TIMEOUT.
        self._answered = self._attempts
        self._next_delay()
        self._submit(lambda now: self._disconnected(rc), "uplink.disconnected", TaskClass.CONTROL)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        self._acks.append((mid, not rc.is_failure))
        self._submit(
            self._handle_acks, "uplink.acks", TaskClass.UPLINK_LIVE, name="uplink.acks", on_duplicate=Duplicate.DROP
        )

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        self._submit(lambda now: self._command(payload), "uplink.command", TaskClass.CONTROL)

    # ---- connection state (engine tasks) -----------------------------------------------

    def _connected(self, now: float) -> Task | None:
        client = self.client
        if client is None:
            return
        self.connected = True
        self._refusal_logged = False
        self.counters["connects"] += 1
        self.last_connect_at = self.engine.clock.time()
        with self._lock:
            self._parked.clear()
        client.subscribe(self.topics["cmd"], qos=1)  # every connect: the session may be new
        client.publish(self.topics["status"], self._status("online"), qos=1, retain=True)
        log.info(
            "uplink connected to %s:%d (MQTT %s)",
            self.s.host,
            self.s.effective_port,
            "5" if self._protocol == mqtt.MQTTv5 else "3.1.1",
        )
        self.kick()
        return self._post_up(now)  # a follow-up task while the gateway is still booting

    def _post_up(self, now: float) -> Task | None:
        """Tell the state machine; while it is still booting, ask again shortly (boot is posted after attach)."""
        if self.gateway is None or not self.connected:
            return None
        if self.gateway.state is State.BOOTING:
            return Task(self._post_up, kind="uplink.post_up", cls=TaskClass.CONTROL, due=now + 0.05)
        self.gateway.post(Event.UPLINK_UP)
        return None

    def _disconnected(self, rc: ReasonCode) -> None:
        was = self.connected
        self.connected = False
        if was:
            self.counters["disconnects"] += 1
            log.warning("uplink disconnected (%s); reconnecting with backoff up to %g s", rc, self.s.backoff_max)
            if self.gateway is not None:
                self.gateway.post(Event.UPLINK_DOWN)

    def _check_connack(self, client: mqtt.Client, attempt: int) -> None:
        """No CONNACK in time: some 3.1.1-only brokers never answer an MQTT 5 CONNECT (with a will)."""
        if self.connected or client is not self.client or attempt != self._attempts or self._answered == attempt:
            return  # connected, superseded, or the attempt ended with an answer (CONNACK or TCP/TLS failure)
        if self._protocol == mqtt.MQTTv5 and self.s.protocol == "auto":
            log.warning("no answer to an MQTT 5 CONNECT within %g s; trying MQTT 3.1.1", CONNECT_TIMEOUT)
            self._protocol = mqtt.MQTTv311
        else:
            log.info("no CONNACK within %g s; connecting again", CONNECT_TIMEOUT)
        self._rebuild()

    def _rebuild(self) -> None:
        """Replace the client (new protocol or a stuck attempt); joining paho's thread is done off the engine."""
        old, self.client = self.client, None
        # What the old client had in flight dies with it: release those rows to be sent again.
        with self._lock:
            self._inflight.clear()
        self._mids.clear()
        if old is not None:
            old.disable_logger()  # its last words would be a misleading "not connected" error
            self.engine.offload(lambda: _retire(old), kind="uplink.close_old")
        self.client = self._make_client()
        self.client.connect_async(self.s.host, self.s.effective_port, keepalive=self.s.keepalive)
        self.client.loop_start()

    def _connect_refused(self, rc: ReasonCode) -> None:
        if rc.value in UNSUPPORTED_PROTOCOL and self._protocol == mqtt.MQTTv5 and self.s.protocol == "auto":
            log.warning("broker refuses MQTT 5; falling back to 3.1.1")
            self._protocol = mqtt.MQTTv311
            self._rebuild()
            return
        # Logged once until a connection succeeds; the retries go on quietly with backoff.
        if not self._refusal_logged:
            self._refusal_logged = True
            log.error("broker refused the connection: %s (check credentials / certificates)", rc)
        else:
            log.debug("broker refused the connection again: %s", rc)

    # ---- drain -------------------------------------------------------------------------

    def kick(self) -> None:
        """Ask for a live drain soon (thread-safe; coalesced)."""
        self._submit(
            self._drain_live,
            "uplink.drain_live",
            TaskClass.UPLINK_LIVE,
            name="uplink.drain",
            on_duplicate=Duplicate.DROP,
        )

    def _free(self) -> int:
        with self._lock:
            return self.s.inflight - len(self._inflight)

    def _drain_live(self, now: float) -> None:
        if not self.connected or self._free() <= 0:
            return
        cutoff = self.engine.clock.time() - self.s.live_window
        self._fetch(self._free(), created_after=cutoff, kind="uplink.fetch_live")

    def _forget_stale(self) -> None:
        """Safety net: a row in flight far longer than any PUBACK takes is released to be sent again.

        paho resends unacknowledged QoS 1 messages itself after a reconnect, so this should never
        fire; if it does, the worst case is a duplicate that the sequence number exposes.
        """
        cutoff = time.time() - STALE_INFLIGHT
        with self._lock:
            stale = {rid for rid, at in self._inflight.items() if at < cutoff}
            for rid in stale:
                del self._inflight[rid]
        if stale:
            self._mids = {mid: rid for mid, rid in self._mids.items() if rid not in stale}
            log.warning("%d messages had no PUBACK for %d s; sending them again", len(stale), STALE_INFLIGHT)

    def _drain_backlog(self, now: float) -> None:
        if self.connected and self.last_connect_at is not None and now - self._stale_checked > 30.0:
            self._stale_checked = now
            if self.engine.clock.time() - self.last_connect_at > STALE_INFLIGHT:
                self._forget_stale()
        rate = self.s.backlog_rate
        self._tokens = min(rate, self._tokens + (now - self._tokens_at) * rate)  # at most one second of burst
        self._tokens_at = now
        if not self.connected:
            return
        # Keep a quarter of the window for live data, so backlog never starves it.
        room = self._free() - max(1, self.s.inflight // 4)
        n = min(int(self._tokens), room)
        if n <= 0:
            return
        self._tokens -= n
        cutoff = self.engine.clock.time() - self.s.live_window
        self._fetch(n, created_before=cutoff, kind="uplink.fetch_backlog")

    def _fetch(self, limit: int, *, kind: str, **where: float) -> None:
        def job(store: OutboxStore) -> list[Row]:
            # On the lane: reserve what we take, so a concurrent fetch cannot take it too.
            with self._lock:
                exclude = set(self._inflight) | self._parked
            rows = store.take(limit, exclude=exclude, **where)
            stamp = time.time()
            with self._lock:
                for row in rows:
                    self._inflight[row.id] = stamp
            return rows

        self.outbox.run(job, self._publish_rows, kind=kind, cls=TaskClass.UPLINK_LIVE)

    def _publish_rows(self, outcome: Outcome[list[Row]]) -> None:
        if not outcome.ok:
            log.error("outbox read failed: %s", outcome.error)
            return
        rows = outcome.value or []
        client = self.client
        unsent = []
        for row in rows:
            if client is None or not self.connected:
                unsent.append(row.id)
                continue
            info = client.publish(row.topic, row.payload, qos=1)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                unsent.append(row.id)  # not queued by paho: give it back
                continue
            self._mids[info.mid] = row.id  # paho keeps NO_CONN messages and resends them on reconnect
            self.counters["published"] += 1
        if unsent:
            with self._lock:
                for rid in unsent:
                    self._inflight.pop(rid, None)

    def _handle_acks(self, now: float) -> None:
        done, refused = [], []
        while self._acks:
            mid, ok = self._acks.popleft()
            rid = self._mids.pop(mid, None)
            if rid is None:
                continue  # status or other non-outbox publish
            (done if ok else refused).append(rid)
        if refused:
            self.counters["refused"] += len(refused)
            log.warning("broker refused %d messages (ACL?); kept, retried after the next reconnect", len(refused))
            with self._lock:  # _parked is read by fetch jobs on the outbox lane
                for rid in refused:
                    self._inflight.pop(rid, None)
                self._parked.update(refused)
        if not done:
            return

        def job(store: OutboxStore) -> int:
            n = store.delete(done)
            with self._lock:  # released only once deleted, so no fetch can take them again
                for rid in done:
                    self._inflight.pop(rid, None)
            return n

        self.counters["acked"] += len(done)
        self.outbox.run(job, lambda outcome: self.kick(), kind="uplink.delete_acked")

    # ---- commands ----------------------------------------------------------------------

    def _command(self, raw: bytes) -> None:
        self.counters["commands"] += 1
        now = self.engine.clock.time()
        try:
            cmd = parse_command(
                raw, backend_key=self.backend_key, gateway_id=self.gw, now=now, max_ttl=self.s.command_max_ttl
            )
        except Rejected as exc:
            self._result(exc.cmd_id, ok=False, reason=exc.reason)
            return
        if handler_for(cmd.name) is None:
            self._result(cmd.id, ok=False, reason=f"unknown command {cmd.name!r}")
            return
        self.outbox.run(
            lambda store: store.remember_command(cmd.id, cmd.exp, now),
            lambda outcome: self._dispatch(cmd, outcome),
            kind="uplink.replay_check",
            cls=TaskClass.CONTROL,
        )

    def _dispatch(self, cmd: Any, outcome: Outcome[bool]) -> None:
        if not outcome.ok:
            self._result(cmd.id, ok=False, reason="could not record the command id; not run")
            return
        if not outcome.value:
            self._result(cmd.id, ok=False, reason="replayed")
            return

        def finish(ok: bool, result: Any, reason: str | None) -> None:
            self._result(cmd.id, ok=ok, result=result, reason=reason)

        req = CommandRequest(cmd.id, cmd.name, cmd.args, self.gateway, finish)
        handler = handler_for(cmd.name)
        assert handler is not None
        try:
            result = handler(req)
        except CommandFailed as exc:
            req.fail(str(exc))
            return
        except Exception as exc:
            log.exception("command %s failed", cmd.name)
            req.fail(f"internal error: {type(exc).__name__}")
            return
        if result is not DEFERRED:
            req.reply(result)

    def _result(self, cmd_id: str | None, *, ok: bool, result: Any = None, reason: str | None = None) -> None:
        if not ok:
            self.counters["rejected"] += 1
            log.info("command %s rejected: %s", cmd_id or "(no id)", reason)
        topic = self.topics["cmd/result"]

        def job(store: OutboxStore) -> None:
            now = self.engine.clock.time()
            token = build_result(self.signer, cmd_id, ok=ok, now=now, result=result, reason=reason)
            _, dropped = store.put(topic, token, prio=PRIO_RESULT, now=now)
            self.outbox.added(dropped)

        self.outbox.run(job, None, kind="uplink.result")

    def stats(self) -> dict[str, Any]:
        """Connection state, counters, in-flight."""
        with self._lock:
            inflight = len(self._inflight)
            parked = len(self._parked)
        return {"connected": self.connected, "inflight": inflight, "parked": parked, **self.counters}
