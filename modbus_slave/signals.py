"""Keep a simulator's command line running until SIGINT or SIGTERM, then stop it."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


def wait_for_signal(stop: Callable[[], object]) -> int:
    """Block until SIGINT/SIGTERM, then call `stop`; returns 0, the exit status of a clean stop."""
    done = threading.Event()
    # The handlers only set the event: the main thread stops the simulator outside signal context.
    signal.signal(signal.SIGINT, lambda *a: done.set())
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    done.wait()
    stop()
    return 0
