"""A real gateway with the system service and the API on loopback, for the system tests (API and Wi-Fi)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from server.api import attach as api
from server.api.system_service import attach as system
from server.api.tokens import load_or_create
from server.audit import attach as audit
from server.crypto.service import attach as identity
from tests.server.api.conftest import Api
from tests.support import api_settings, started_gateway


@contextmanager
def system_gateway(
    data_dir: Path, env: dict[str, str] | None = None, extra: tuple[Any, ...] = (), **overrides: Any
) -> Iterator[Api]:
    """Start audit, identity, `extra`, system and API (127.0.0.1, free port; mDNS and WebSocket off unless asked)."""
    settings = api_settings(data_dir, **overrides)
    with started_gateway(settings, [audit, identity, *extra, system, api], env=env) as gw:
        tokens, _ = load_or_create(gw.data_dir)
        yield Api(gw, settings["api.port"], tokens.admin, tokens.read)
