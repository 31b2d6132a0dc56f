"""Helpers the test packages share (import as `from tests.support import ...`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

NOON = 1_699_963_200.0  # 2023-11-14 12:00 UTC: simulator clock at solar noon, readings steady and non-zero


def wait_for(
    cond: Callable[[], Any], timeout: float = 10.0, step: float = 0.02, why: Callable[[], str] | None = None
) -> Any:
    """Poll `cond` until it returns something truthy (returned) or fail after `timeout` s, saying `why()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s" + (f": {why()}" if why else ""))
