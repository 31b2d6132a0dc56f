"""MQTT 5 -> 3.1.1 fallback against a real 3.1.1-only broker (amqtt, pure Python)."""

import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from server.statemachine import State
from server.uplink.broker import free_port
from tests.support import wait_for

from .conftest import snap

pytestmark = pytest.mark.integration


@pytest.fixture
def amqtt_port():
    pytest.importorskip("amqtt", reason="amqtt (a dev dependency) is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("amqtt_broker.py")), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield port
    finally:
        proc.kill()
        proc.wait(5)


def test_falls_back_to_3_1_1_and_delivers(amqtt_port, gateway_factory):
    class Port:
        port = amqtt_port

    gw = gateway_factory(Port)
    wait_for(lambda: gw.state is State.ONLINE, 10)
    up = gw.services["uplink"]
    assert up._protocol == mqtt.MQTTv311
    for i in range(5):
        gw.bus.publish(snap("m1", i))
    wait_for(lambda: gw.services["telemetry"].records == 5 and gw.services["outbox"].store.rows == 0, 10)
    assert up.counters["acked"] >= 1
