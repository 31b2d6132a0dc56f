import pytest

from server.statemachine import State
from tests.support import wait_for

from .conftest import snap

pytestmark = pytest.mark.integration


def test_plain_broker_delivers_signed_batches(mosquitto, gateway_factory, consumer_factory):
    consumer = consumer_factory(mosquitto)
    gw = gateway_factory(mosquitto)
    wait_for(lambda: gw.state is State.ONLINE, 10, why=lambda: str(gw.services["uplink"].stats()))
    for i in range(20):
        gw.bus.publish(snap("inv1", i))
    gid = gw.services["identity"].device_id
    wait_for(lambda: len(consumer.store.sequences(gid)) == 20)
    assert consumer.store.sequences(gid) == list(range(1, 21))
    assert consumer.counts["rejected"] == 0
    wait_for(lambda: gw.services["outbox"].store.rows == 0)
