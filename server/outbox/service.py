"""Outbox service: the store behind one engine lane, drop reports on the bus, wake-ups for the uplink."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from server.bus import DeviceEvent
from server.engine import Duplicate, Engine, EngineStopped, Outcome, Task, TaskClass

from .store import OutboxStore

if TYPE_CHECKING:
    from server.bus import Bus
    from server.gateway import Gateway

log = logging.getLogger("ohm.outbox")

DB_FILE = "outbox.sqlite"


class Outbox:
    """Runs every store operation on one lane (SQLite is one resource) and reports drops."""

    def __init__(self, engine: Engine, bus: Bus | None, store: OutboxStore) -> None:
        self.engine = engine
        self.bus = bus
        self.store = store
        self.lane = engine.lane("outbox", cls=TaskClass.UPLINK_LIVE, max_pending=100_000)
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._unreported = 0
        self._closing: list[Callable[[], None]] = []

    def before_close(self, fn: Callable[[], None]) -> None:
        """Call `fn()` at shutdown before the database closes (last writes such as a final batch)."""
        self._closing.append(fn)

    def close(self) -> None:
        """Shutdown hook: run the before-close steps, then close the store."""
        for fn in self._closing:
            try:
                fn()
            except Exception:
                log.exception("outbox: a final write failed at shutdown")
        self.store.close()

    def on_new(self, fn: Callable[[], None]) -> None:
        """Call `fn()` (on a worker thread; it must only submit tasks) after rows were added."""
        self._listeners.append(fn)

    def run(
        self,
        job: Callable[[OutboxStore], Any],
        then: Callable[[Outcome[Any]], Any] | None = None,
        *,
        kind: str,
        cls: TaskClass = TaskClass.HARVEST,
    ) -> None:
        """Run `job(store)` on the outbox lane; `then(outcome)` follows as an engine task of class `cls`.

        Writers keep the default HARVEST class, which is not paused while the gateway is offline.
        """
        self.engine.offload(lambda: job(self.store), then, kind=kind, cls=cls, lane=self.lane)

    def added(self, dropped: int) -> None:
        """Called by writers (on the lane) after a put: wake the uplink, report drops."""
        dropped += self.store.take_pending_drops()  # made to free a full disk
        try:
            for fn in self._listeners:
                fn()
            if dropped:
                with self._lock:
                    self._unreported += dropped
                # Coalesced: a burst of drops becomes one event, and the event's own put cannot loop.
                self.engine.submit(
                    Task(
                        self._report,
                        kind="outbox.report_drops",
                        name="outbox.report_drops",
                        on_duplicate=Duplicate.DROP,
                    ),
                    delay=1.0,
                )
        except EngineStopped:
            pass  # a final write at shutdown: counted in the store, reported at the next start

    def _report(self, now: float) -> None:
        with self._lock:
            n, self._unreported = self._unreported, 0
        if n and self.bus is not None:
            log.warning(
                "outbox full, too old or disk nearly full: dropped %d oldest messages (%d in all)",
                n,
                self.store.dropped,
            )
            self.bus.emit(
                DeviceEvent(
                    "outbox_dropped",
                    self.engine.clock.time(),
                    detail={"dropped": n, "total_dropped": self.store.dropped, "max_bytes": self.store.max_bytes},
                )
            )

    def stats(self) -> dict[str, Any]:
        """Rows, bytes, drops (reads the in-memory counters only)."""
        return {
            "rows": self.store.rows,
            "bytes": self.store.bytes,
            "max_bytes": self.store.max_bytes,
            "dropped": self.store.dropped,
            "disk_full": self.store.disk_full,
            "disk_cap": self.store.disk_cap,
        }


def attach(gateway: Gateway) -> None:
    """Open data_dir/outbox.sqlite with the configured bounds and register it as 'outbox'."""
    cfg = gateway.config
    store = OutboxStore(gateway.data_dir / DB_FILE, max_bytes=cfg["outbox.max_bytes"], max_age=cfg["outbox.max_age"])
    outbox = Outbox(gateway.engine, gateway.bus, store)
    gateway.services["outbox"] = outbox
    gateway.engine.on_shutdown("outbox", outbox.close)
    log.info("outbox: %d messages (%d bytes) waiting, %d dropped so far", store.rows, store.bytes, store.dropped)
