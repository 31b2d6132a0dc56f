"""A flapping broker link must not leak paho clients or their descriptors (found by the reliability soak).

CONNECT_TIMEOUT is shortened so paho's reconnect backoff is longer than it, as in the soak (backoff_max 10 s).
"""

import os

import paho.mqtt.client as mqtt
import pytest

import server.uplink.client as uplink_client
from server.statemachine import State
from tests.reliability.proxy import LinkProxy
from tests.support import wait_for

pytestmark = pytest.mark.integration


def fd_count() -> int:
    """Open descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def link(mosquitto):
    """A loopback fault proxy in front of the broker."""
    with LinkProxy(mosquitto.port) as proxy:
        yield proxy


def start(gateway_factory, link):
    """A gateway whose uplink goes through `link`, online, with its uplink service."""
    gw = gateway_factory(link, mqtt__backoff_max=1.5)
    wait_for(lambda: gw.state is State.ONLINE, 10)
    return gw, gw.services["uplink"]


def test_cut_link_is_an_answer_not_a_silent_broker(monkeypatch, gateway_factory, link):
    """A link that closes each attempt at once keeps the one client and MQTT 5 (no rebuild, no 3.1.1 fallback)."""
    monkeypatch.setattr(uplink_client, "CONNECT_TIMEOUT", 0.3)
    gw, up = start(gateway_factory, link)
    client, fds = up.client, fd_count()
    link.cut()
    wait_for(lambda: link.refused >= 3, 8, why=lambda: f"{link.refused} attempts refused")
    link.restore()
    wait_for(lambda: up.connected and gw.state is State.ONLINE, 5)
    assert up.client is client, "the client was rebuilt although every attempt was answered by a close"
    assert up._protocol == mqtt.MQTTv5, "a cut link made the uplink fall back to MQTT 3.1.1"
    wait_for(lambda: fd_count() <= fds, 3, why=lambda: f"fds {fds} -> {fd_count()}")


def test_rebuilt_client_closes_its_descriptors_even_while_referenced(monkeypatch, gateway_factory, link):
    """A silent link (no CONNACK in time) rebuilds the client; the old one's socket pair is closed at once."""
    monkeypatch.setattr(uplink_client, "CONNECT_TIMEOUT", 0.3)
    gw, up = start(gateway_factory, link)
    old, fds = up.client, fd_count()  # `old` stays referenced: only an explicit close frees its descriptors
    link.set_delay(1.0)  # the CONNECT is held longer than CONNECT_TIMEOUT: a broker that does not answer
    link.cut()  # drop the live connection so the next attempt meets the delay
    wait_for(lambda: link.connections == 0, 3)
    link.restore()
    wait_for(lambda: up.client is not old and up.client is not None, 8)
    link.set_delay(0.0)
    wait_for(lambda: up.connected and gw.state is State.ONLINE, 8)
    wait_for(lambda: fd_count() <= fds, 3, why=lambda: f"fds {fds} -> {fd_count()} with the old client referenced")
    assert old is not up.client
