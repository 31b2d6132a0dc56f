"""The gateway: one engine, the state machine on top, and the built-in housekeeping tasks."""

from __future__ import annotations

import logging
import shutil
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.bus import Bus
from server.config import Config
from server.engine import Clock, Duplicate, Engine, EngineStopped, Outcome, TaskClass
from server.statemachine import Event, IllegalTransition, State, policy_for, step

log = logging.getLogger("ohm.gateway")

LOW_DISK_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Transition:
    """A recorded state change (or refused event), for the API and the log."""

    at: float
    event: str
    before: str
    after: str
    ok: bool


class Gateway:
    """Owns the engine and the gateway state; everything else plugs in as tasks."""

    def __init__(
        self,
        config: Config,
        clock: Clock | None = None,
        *,
        provisioned: Callable[[], bool] | None = None,
        report: Callable[[dict[str, Any]], None] | None = None,
        services: list[Callable[[Gateway], None]] | None = None,
    ) -> None:
        self.config = config
        self.bus = Bus()
        # Running services by name ("devices", "identity", "uplink", ...), so they can find each other.
        self.services: dict[str, Any] = {}
        self._services = list(services or [])
        self.engine = Engine(
            clock, workers=config.workers, max_pending=config.max_pending_jobs, policy=policy_for(State.BOOTING)
        )
        self.state = State.BOOTING
        self.history: deque[Transition] = deque(maxlen=100)
        self._provisioned = provisioned
        self.exit_code = 0  # what the process exits with after run(); a restart request sets 75
        self._report = report or self._log_stats
        self._listeners: list[Callable[[State, State, Event], None]] = []
        self._lock = threading.Lock()
        self.data_dir = Path(config.data_dir)

    # ---- state ------------------------------------------------------------------------

    def on_transition(self, listener: Callable[[State, State, Event], None]) -> None:
        """Call `listener(before, after, event)` on every state change, on the engine thread."""
        self._listeners.append(listener)

    def post(self, event: Event) -> None:
        """Feed an event to the state machine (thread-safe); it is applied as a control task."""

        def apply_now(now: float) -> None:
            self.apply(event)

        try:
            self.engine.call_soon(apply_now, kind=f"state.{event.value}", cls=TaskClass.CONTROL)
        except EngineStopped:
            log.debug("event %s after shutdown ignored", event.value)

    def apply(self, event: Event) -> State:
        """Step the state machine now; an illegal event is logged and leaves the state as it was."""
        with self._lock:
            before = self.state
            try:
                after = step(before, event)
            except IllegalTransition as exc:
                log.warning("%s", exc)
                self.history.append(
                    Transition(self.engine.clock.time(), event.value, before.value, before.value, False)
                )
                return before
            self.state = after
            self.history.append(Transition(self.engine.clock.time(), event.value, before.value, after.value, True))
        if after is not before:
            log.info("state %s -> %s (%s)", before.value, after.value, event.value)
            self.engine.set_policy(policy_for(after))
            for listener in self._listeners:
                listener(before, after, event)
        return after

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Prepare the data directory, schedule housekeeping and the boot event."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        interval = self.config.stats_interval
        if interval > 0:
            self.engine.every(
                interval,
                lambda now: self._report(self.engine.stats()),
                first=interval,
                kind="housekeeping.stats",
                name="housekeeping.stats",
                cls=TaskClass.HOUSEKEEPING,
            )
        self.engine.every(
            300.0,
            self._check_disk,
            kind="housekeeping.disk",
            name="housekeeping.disk",
            on_duplicate=Duplicate.REPLACE,
            cls=TaskClass.HOUSEKEEPING,
        )
        for attach in self._services:
            attach(self)
        booted = Event.BOOTED_PROVISIONED if self.is_provisioned() else Event.BOOTED_UNPROVISIONED
        self.post(booted)
        self.engine.on_shutdown("state", lambda: self.apply(Event.SHUTDOWN))

    def is_provisioned(self) -> bool:
        """The boot check: the `provisioned` callable if given, else the provisioning service's real check.

        The real check (owner set, and a Wi-Fi connection known to NetworkManager or network.wired) comes
        with the system service that default_services() attaches, so a production first boot goes to
        PROVISIONING; a gateway built without that service (tests, tools) has nothing to provision.
        """
        if self._provisioned is not None:
            return self._provisioned()
        check = self.services.get("provisioning")
        return True if check is None else bool(check.boot_check())

    def run(self) -> None:
        """Start and run until stopped (blocks the calling thread)."""
        try:
            self.start()
        except EngineStopped:
            # A stop (signal, --run-for) came while the services were starting: run the shutdown hooks and go.
            log.info("stopped while starting")
        self.engine.run()

    def stop(self) -> None:
        """Begin a graceful shutdown within the configured timeout."""
        self.engine.stop(self.config.shutdown_timeout)

    # ---- housekeeping -----------------------------------------------------------------

    def _check_disk(self, now: float) -> None:
        self.engine.offload(
            lambda: shutil.disk_usage(self.data_dir).free, self._disk_checked, kind="housekeeping.disk_usage"
        )

    def _disk_checked(self, outcome: Outcome[int]) -> None:
        free = outcome.unwrap()
        if free < LOW_DISK_BYTES:
            log.warning("only %.1f MB free under %s", free / 1e6, self.data_dir)

    @staticmethod
    def _log_stats(stats: dict[str, Any]) -> None:
        log.info("engine: %s", summary_line(stats))


def summary_line(stats: dict[str, Any]) -> str:
    """One human line from engine stats."""
    late = stats["lateness_ms"]
    workers = stats["workers"]
    return (
        f"uptime {stats['uptime_s']:.0f}s, ran {stats['tasks_run']} tasks, queue {stats['queue_depth']}, "
        f"lateness p50 {late['p50']:.2f} ms p99 {late['p99']:.2f} ms, failures {stats['failures']}, "
        f"overruns {stats['overruns']}, workers {workers['busy']}/{workers['max_workers']} busy"
    )
