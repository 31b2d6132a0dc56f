"""Is the wall clock synchronised? Asks the kernel (adjtimex) where it can, else a plausibility check."""

from __future__ import annotations

import ctypes
import ctypes.util
import time

TIME_ERROR = 5  # adjtimex clock state: not synchronised
EARLIEST_PLAUSIBLE = 1_735_689_600.0  # 2025-01-01: a Pi without RTC boots in 1970 or at its last shutdown


def clock_synced() -> bool:
    """True when the kernel says NTP keeps the clock in sync (or, failing that, the date is plausible)."""
    if time.time() < EARLIEST_PLAUSIBLE:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return True
    return state not in (-1, TIME_ERROR)
