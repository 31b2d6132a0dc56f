"""Telemetry service: collects bus snapshots, and every batch interval signs a chained batch into the outbox."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from server.bus import DeviceEvent, Snapshot
from server.crypto.base import Signer
from server.engine import Engine, EngineStopped, Outcome, TaskClass
from server.outbox.service import Outbox
from server.outbox.store import PRIO_LIVE, OutboxStore

from .clocksync import clock_synced
from .envelope import GENESIS, ChainState, build_batch, build_event, record_from_snapshot

if TYPE_CHECKING:
    from server.gateway import Gateway

log = logging.getLogger("ohm.telemetry")

MAX_BATCH = 5000  # records per envelope; more wait for the next flush
MAX_INCOMING = 200_000  # readings held in memory while the disk refuses writes; the oldest go first


def topic(prefix: str, gateway_id: str, leaf: str) -> str:
    """`<prefix>/<gateway>/<leaf>`."""
    return f"{prefix}/{gateway_id}/{leaf}"


class Telemetry:
    """Readings are journaled in the outbox database at poll time and signed into a batch every interval.

    A reading lives in memory only from the bus publish until the journal job commits it on the
    outbox lane (milliseconds); from then on it survives kill -9 and goes into the next batch, also
    after a restart. The chain state lives in the outbox database too.
    """

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
        self._incoming: list[dict[str, Any]] = []  # not yet journaled
        self._lock = threading.Lock()
        self._journal_queued = False
        self.state = ChainState(
            outbox.store.get_meta("next_seq", 1), outbox.store.get_meta("prev_hash", GENESIS)
        )  # read once at start, before the lane runs anything
        self.batches = 0
        self.records = 0
        self.journaled = 0
        self.lost = 0  # readings dropped because memory filled while the disk refused writes

    def on_snapshot(self, snap: Snapshot) -> None:
        """Bus subscriber: keep the record and have it journaled on the outbox lane (never blocks)."""
        rec = record_from_snapshot(snap)
        with self._lock:
            self._incoming.append(rec)
            if len(self._incoming) > MAX_INCOMING:  # the disk refuses writes for long: bound memory
                del self._incoming[0]
                self.lost += 1
            if self._journal_queued:
                return  # the queued job takes this record too: one transaction per burst of polls
            self._journal_queued = True
        try:
            self.outbox.run(self._journal_job, self._stored, kind="telemetry.journal")
        except EngineStopped:
            with self._lock:
                self._journal_queued = False  # shutting down: flush_now signs what is in memory

    def _journal_job(self, store: OutboxStore) -> int:
        with self._lock:
            self._journal_queued = False  # records arriving from now on queue a new job
            records = list(self._incoming)
        store.journal_add(records)
        with self._lock:
            del self._incoming[: len(records)]  # only after the commit: a failed write keeps them
        self.journaled += len(records)
        return len(records)

    def on_event(self, event: DeviceEvent) -> None:
        """Bus subscriber: sign the event into the outbox for /events."""
        synced = self.synced()

        def job(store: OutboxStore) -> None:
            token = build_event(self.signer, event, synced=synced)
            _, dropped = store.put(self.events_topic, token, prio=PRIO_LIVE, now=self.engine.clock.time())
            self.outbox.added(dropped)

        self.outbox.run(job, self._stored, kind="telemetry.event")

    def flush(self, now: float | None = None) -> None:
        """Sign what is journaled and pending as one batch and queue it (on the outbox lane, atomically)."""
        if self.pending():
            self.outbox.run(self._batch_job, self._stored, kind="telemetry.batch")

    def flush_now(self) -> None:
        """At shutdown: sign and store what is pending on this thread (the engine loop has stopped)."""
        while self._batch_job(self.outbox.store):
            pass

    def pending(self) -> int:
        """Readings not yet signed into a batch (journaled or in memory)."""
        with self._lock:
            return len(self._incoming) + self.outbox.store.journal_rows

    def _batch_job(self, store: OutboxStore) -> int:
        # Runs on the lane (or at shutdown): journaled readings first (older), then those in memory.
        journaled, upto = store.journal_take(MAX_BATCH)
        with self._lock:
            fresh = self._incoming[: MAX_BATCH - len(journaled)]
        records = journaled + fresh
        if not records:
            return 0
        token, state, _ = build_batch(
            self.signer, self.state, records, now=self.engine.clock.time(), synced=self.synced()
        )
        _, dropped = store.put(
            self.topic,
            token,
            prio=PRIO_LIVE,
            now=self.engine.clock.time(),
            meta={"next_seq": state.next_seq, "prev_hash": state.prev_hash},
            journal_upto=upto,
        )
        # The chain state advances and the records leave memory only after the batch is committed.
        with self._lock:
            del self._incoming[: len(fresh)]
        self.state = state
        self.batches += 1
        self.records += len(records)
        self.outbox.added(dropped)
        return len(records)

    def _stored(self, outcome: Outcome[Any]) -> None:
        if not outcome.ok:
            log.error("could not store telemetry: %s", outcome.error)

    def stats(self) -> dict[str, Any]:
        """Batches and records signed, the next sequence number."""
        return {
            "batches": self.batches,
            "records": self.records,
            "next_seq": self.state.next_seq,
            "pending": self.pending(),
            "journaled": self.journaled,
            "lost": self.lost,
        }


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
    # HARVEST class: batching goes on while offline (the uplink classes are paused then). The first batch goes
    # out a second after start, so the first reading is published within 2 s; then one every interval.
    gateway.engine.every(
        interval,
        tele.flush,
        first=min(interval, 1.0),
        kind="telemetry.flush",
        name="telemetry.flush",
        cls=TaskClass.HARVEST,
    )
    outbox.before_close(tele.flush_now)
    gateway.services["telemetry"] = tele
