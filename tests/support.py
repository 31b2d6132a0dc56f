"""Helpers the test packages share (import as `from tests.support import ...`)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import Any

# Debian's chromium from apt, never a browser Playwright downloads; the same flags in every browser test.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHROMIUM_MISSING = f"{CHROMIUM} is missing (apt-get install chromium; `make test` installs it)"

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


def chromium_available() -> bool:
    """Debian's chromium is installed (apt)."""
    return shutil.which(CHROMIUM) is not None


def launch_chromium(browser_type: Any) -> Any:
    """Launch headless Debian chromium with Playwright's `pw.chromium` (sync: a Browser; async: an awaitable)."""
    return browser_type.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
