"""Fixtures of the device tests: a running device service (`svc`) and simulators stopped at the end (`stop_later`).

Modules that need a differently tuned service (test_poller, test_mdns) define their own `svc`, which wins.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.devices.service import DeviceService
from tests.server.devices.meter_support import running_service, stopping


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[DeviceService]:
    """A device service on a real engine thread with short timeouts and backoff."""
    yield from running_service(tmp_path)


@pytest.fixture
def stop_later() -> Iterator[list[Any]]:
    """Append simulators here; each is stopped at the end."""
    yield from stopping()
