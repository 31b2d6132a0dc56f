"""Local REST API: Flask served by waitress on its own threads; `attach(gateway)` starts it."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.gateway import Gateway

log = logging.getLogger("ohm.api")


def attach(gateway: Gateway) -> None:
    """Load (or create) the tokens, start the HTTP server, stop it on engine shutdown (api.port 0 = off)."""
    from . import live as live_ws
    from .app import create_app
    from .history import PowerHistory
    from .limiter import FailureLimiter
    from .logbuffer import RingLog
    from .notifications import Notifications
    from .routes import ApiContext
    from .server import ApiServer
    from .tokens import load_or_create

    cfg = gateway.config
    port = int(cfg.get("api.port", 8080))
    if port == 0:
        log.info("API disabled (api.port = 0)")
        return
    try:
        tokens, created = load_or_create(gateway.data_dir)
    except (OSError, ValueError) as exc:
        # No API beats an API with unknown tokens; harvesting and uplink go on.
        log.error("API not started: %s", exc)
        return
    if created:
        # The pairing path: shown once on the console, deliberately not through logging.
        print(
            f"Ohm API admin token (shown once; also in {gateway.data_dir}/api_tokens.json): {tokens.admin}",
            file=sys.stderr,
        )
    # Recent records for GET /api/logs; the tokens are masked should one ever reach a log line.
    ring = RingLog(secrets=(tokens.admin, tokens.read))
    logging.getLogger().addHandler(ring)
    notes = Notifications()
    gateway.bus.on_event(notes.on_event)  # kept even if the port is busy: cheap, and the bus has no unsubscribe
    history = PowerHistory()  # the dashboard's last hour of power, fed by every snapshot
    gateway.bus.on_snapshot(history.on_snapshot)
    gateway.bus.on_event(history.on_event)
    gateway.services["history"] = history
    limiter = FailureLimiter()  # one per process: failed logins over HTTP and the WebSocket count together
    app = create_app(gateway, tokens, limiter=limiter, context=ApiContext(gateway, logs=ring, notes=notes))
    host = str(cfg.get("api.host", "0.0.0.0"))
    try:
        server = ApiServer(app, host, port, threads=int(cfg.get("api.threads", 4))).start()
    except OSError as exc:
        # A busy port must not take harvesting down with it: the gateway runs on without its API.
        logging.getLogger().removeHandler(ring)
        log.error("API not started: cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        return
    gateway.services["api"] = server
    live = live_ws.start(gateway, tokens, limiter, notes, host)

    def stop() -> None:
        if live is not None:
            live.stop()
        server.stop()
        logging.getLogger().removeHandler(ring)

    gateway.engine.on_shutdown("api", stop)
    log.info("API listening on %s:%d", server.host, server.port)
    from .mdns import attach as mdns

    mdns(gateway, server.host, server.port)  # after the API: its shutdown hook runs later, goodbye last
