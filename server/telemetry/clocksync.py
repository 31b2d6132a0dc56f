"""Is the wall clock synchronised? Asks the kernel (adjtimex) where it can, else a plausibility check."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time
from typing import Any

TIME_ERROR = 5  # adjtimex clock state: not synchronised
EARLIEST_PLAUSIBLE = 1_735_689_600.0  # 2025-01-01: a Pi without RTC boots in 1970 or at its last shutdown


@functools.cache
def _libc() -> Any:
    # find_library runs ldconfig in a subprocess: once per process, never per batch.
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def clock_synced() -> bool:
    """True when the kernel says NTP keeps the clock in sync (or, failing that, the date is plausible)."""
    if time.time() < EARLIEST_PLAUSIBLE:
        return False
    libc = _libc()
    if libc is None or not hasattr(libc, "adjtimex"):
        return True
    buf = ctypes.create_string_buffer(512)  # struct timex with modes = 0: read only
    state = libc.adjtimex(buf)
    return state not in (-1, TIME_ERROR)
