"""Shared fixtures: real components on loopback (a mosquitto broker factory, a throwaway PKI)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# This file makes pytest put tests/ on sys.path, where tests/server would shadow the real
# `server` package when pytest is started as .venv/bin/pytest: put the repository first.
_ROOT = str(Path(__file__).resolve().parent.parent)
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)

from modbus_slave.server import Simulator  # noqa: E402
from server.consumer import Consumer, ConsumerStore  # noqa: E402
from server.consumer.consumer import ConsumerSettings  # noqa: E402
from server.uplink.broker import Broker  # noqa: E402
from server.uplink.pki import Pki, make_pki  # noqa: E402
from tests.support import NOON, wait_for  # noqa: E402


def _need_mosquitto() -> None:
    if Broker.available():
        return
    if os.environ.get("CI"):
        pytest.fail("mosquitto is not installed; `make sysdeps` must install it in CI")
    pytest.skip("mosquitto is not installed (apt-get install mosquitto); `make test` installs it")


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Start brokers with `factory(users=..., acl=..., tls=..., persistence=...)`; all stopped at the end."""
    _need_mosquitto()
    brokers: list[Broker] = []

    def factory(**kw: Any) -> Broker:
        broker = Broker(tmp_path / f"broker{len(brokers)}", **kw)
        brokers.append(broker)
        return broker.start()

    try:
        yield factory
    finally:
        for broker in brokers:
            broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Broker]) -> Broker:
    """A plain anonymous broker on 127.0.0.1 and a free port."""
    return mosquitto_factory()


@pytest.fixture
def consumer_factory(tmp_path: Path) -> Iterator[Callable[..., Consumer]]:
    """Reference consumers (verify, de-duplicate, store) connected straight to a broker; all stopped at the end."""
    made: list[Consumer] = []

    def make(broker: Any, **kw: Any) -> Consumer:
        store = ConsumerStore(tmp_path / f"consumer{len(made)}.sqlite")
        c = Consumer(ConsumerSettings(port=broker.port, client_id=f"consumer{len(made)}", **kw), store).start()
        made.append(c)
        wait_for(c.connected.is_set, 5)
        return c

    try:
        yield make
    finally:
        for c in made:
            c.stop()
            c.store.close()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and a maker of client certificates."""
    return make_pki(tmp_path / "pki")


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A simulated SMA inverter on 127.0.0.1 with its clock held at noon."""
    s = Simulator("sma", clock=lambda: NOON).start()
    try:
        yield s
    finally:
        s.stop()
