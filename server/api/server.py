"""Serve the API with waitress on its own thread; stopped cleanly from the engine's shutdown hook."""

from __future__ import annotations

import logging
import threading
from typing import Any

from waitress import create_server, wasyncore

log = logging.getLogger("ohm.api")


class ApiServer:
    """A waitress server whose socket loop runs on one thread and request handlers on `threads` more."""

    def __init__(self, app: Any, host: str, port: int, *, threads: int = 4) -> None:
        self._server = create_server(
            app, host=host, port=port, threads=threads, ident="ohm", clear_untrusted_proxy_headers=True
        )
        # waitress warns on every queued request ("Task queue depth is N"); a short queue under a burst is normal.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0 in tests)."""
        return int(self._server.effective_port)

    @property
    def host(self) -> str:
        """The address actually bound."""
        return str(self._server.effective_host)

    def start(self) -> ApiServer:
        """Start serving on a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="ohm-api", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        # Our own loop (not server.run()) so a stop flag ends it and all closing happens on this thread.
        server = self._server
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=0.5, map=server._map, count=1)
        finally:
            for channel in list(server._map.values()):
                try:
                    channel.close()
                except OSError:
                    pass
            server.task_dispatcher.shutdown(timeout=2)

    def stop(self, timeout: float = 3.0) -> None:
        """Stop accepting, close connections, and join the threads."""
        self._stop.set()
        try:
            self._server.pull_trigger()
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("API server did not stop within %.1f s", timeout)
