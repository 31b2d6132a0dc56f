"""Telemetry service: collects bus snapshots, and every batch interval signs a chained batch into the outbox."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from server.bus import DeviceEvent, Snapshot
from server.crypto.base import Signer
from server.engine import Engine, Outcome, TaskClass
from server.outbox.service import Outbox
from server.outbox.store import PRIO_LIVE, OutboxStore

from .clocksync import clock_synced
from .envelope import GENESIS, ChainState, build_batch, build_event, record_from_snapshot

if TYPE_CHECKING:
    from server.gateway import Gateway

log = logging.getLogger("ohm.telemetry")

MAX_BATCH = 5000  # records per envelope; more wait for the next flush


def topic(prefix: str, gateway_id: str, leaf: str) -> str:
    """`<prefix>/<gateway>/<leaf>`."""
    return f"{prefix}/{gateway_id}/{leaf}"


class Telemetry:
    """Pending records in memory until the next flush; the chain state lives in the outbox database."""

    def __init__(
        self,
        engine: Engine,
        signer: Signer,
        outbox: Outbox,
        *,
        prefix: str = "ohm",
        synced: Callable[[], bool] = clock_synced,
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.outbox = outbox
        self.synced = synced
        self.topic = topic(prefix, signer.device_id, "telemetry")
        self.events_topic = topic(prefix, signer.device_id, "events")
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.state = ChainState(
            outbox.store.get_meta("next_seq", 1), outbox.store.get_meta("prev_hash", GENESIS)
        )  # read once at start, before the lane runs anything
        self.batches = 0
        self.records = 0

    def on_snapshot(self, snap: Snapshot) -> None:
        """Bus subscriber: keep the record for the next batch (never blocks)."""
        rec = record_from_snapshot(snap)
        with self._lock:
            self._pending.append(rec)

    def on_event(self, event: DeviceEvent) -> None:
        """Bus subscriber: sign the event into the outbox for /events."""
        synced = self.synced()

        def job(store: OutboxStore) -> None:
            token = build_event(self.signer, event, synced=synced)
            _, dropped = store.put(self.events_topic, token, prio=PRIO_LIVE, now=self.engine.clock.time())
            self.outbox.added(dropped)

        self.outbox.run(job, self._stored, kind="telemetry.event")

    def flush(self, now: float | None = None) -> None:
        """Sign what is pending as one batch and queue it (on the outbox lane, which signs and stores atomically)."""
        job = self._batch_job()
        if job is not None:
            self.outbox.run(job, self._stored, kind="telemetry.batch")

    def flush_now(self) -> None:
        """At shutdown: sign and store what is pending on this thread (the engine loop has stopped)."""
        while (job := self._batch_job()) is not None:
            job(self.outbox.store)

    def _batch_job(self) -> Callable[[OutboxStore], int] | None:
        with self._lock:
            records, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        if not records:
            return None
        synced = self.synced()

        def job(store: OutboxStore) -> int:
            # Runs on the lane: chain state advances only after the batch is committed with it.
            token, state, _ = build_batch(self.signer, self.state, records, now=self.engine.clock.time(), synced=synced)
            _, dropped = store.put(
                self.topic,
                token,
                prio=PRIO_LIVE,
                now=self.engine.clock.time(),
                meta={"next_seq": state.next_seq, "prev_hash": state.prev_hash},
            )
            self.state = state
            self.batches += 1
            self.records += len(records)
            self.outbox.added(dropped)
            return len(records)

        return job

    def _stored(self, outcome: Outcome[Any]) -> None:
        if not outcome.ok:
            log.error("could not queue telemetry: %s", outcome.error)

    def stats(self) -> dict[str, Any]:
        """Batches and records signed, the next sequence number."""
        with self._lock:
            pending = len(self._pending)
        return {"batches": self.batches, "records": self.records, "next_seq": self.state.next_seq, "pending": pending}


def attach(gateway: Gateway) -> None:
    """Subscribe to snapshots and events; flush a signed batch every telemetry.batch_interval seconds."""
    signer = gateway.services.get("identity")
    outbox = gateway.services.get("outbox")
    if signer is None or outbox is None:
        log.error("telemetry needs the identity and outbox services; not started")
        return
    cfg = gateway.config
    tele = Telemetry(gateway.engine, signer, outbox, prefix=cfg["mqtt.topic_prefix"])
    gateway.bus.on_snapshot(tele.on_snapshot)
    gateway.bus.on_event(tele.on_event)
    interval = cfg["telemetry.batch_interval"]
    # HARVEST class: batching goes on while offline (the uplink classes are paused then).
    gateway.engine.every(
        interval, tele.flush, first=interval, kind="telemetry.flush", name="telemetry.flush", cls=TaskClass.HARVEST
    )
    outbox.before_close(tele.flush_now)
    gateway.services["telemetry"] = tele
