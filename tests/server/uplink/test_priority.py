"""A backlog drains under its rate cap while live data overtakes it."""

import time

import pytest

from server.crypto.software import SoftwareSigner
from server.outbox.store import OutboxStore
from server.statemachine import State
from server.telemetry.envelope import ChainState, build_batch
from tests.support import wait_for

from .conftest import snap

pytestmark = pytest.mark.integration


def test_live_data_overtakes_a_rate_capped_backlog(mosquitto, gateway_factory, consumer_factory, tmp_path):
    data = tmp_path / "gw"
    signer = SoftwareSigner.load_or_create(data)
    store = OutboxStore(data / "outbox.sqlite")
    state, hour_ago = ChainState(), time.time() - 3600
    for i in range(300):  # 300 old batches: 15 s at 20 messages/s
        rec = {"d": "old", "t": hour_ago + i, "on": True, "v": {"n": i}}
        token, state, _ = build_batch(signer, state, [rec], now=hour_ago + i, synced=True)
        store.put(
            f"ohm/{signer.device_id}/telemetry",
            token,
            now=hour_ago + i,
            meta={"next_seq": state.next_seq, "prev_hash": state.prev_hash},
        )
    store.close()
    consumer = consumer_factory(mosquitto)
    gw = gateway_factory(mosquitto, mqtt__backlog_rate=20.0)
    wait_for(lambda: gw.state is State.ONLINE, 10)
    time.sleep(0.5)
    sent = time.time()
    gw.bus.publish(snap("live", 1))
    live_seq = 301
    wait_for(lambda: live_seq in consumer.store.sequences(signer.device_id), 5)
    latency = time.time() - sent
    backlog_left = gw.services["outbox"].store.rows
    assert backlog_left > 150, "the backlog should still be draining"
    assert latency < 2.0
    # The cap holds: in about a second, at most ~20/s (+1 s of burst) old batches went out.
    assert len(consumer.store.sequences(signer.device_id)) < 80
