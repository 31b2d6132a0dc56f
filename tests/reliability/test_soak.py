"""The long run for `make soak` (not CI): real-time (or lightly scaled) patterns on the broker link and an
inverter link at once, for RELIABILITY_SOAK_S seconds, with real devices, the uplink and a consumer.

    make soak                                   # 10 min, pattern B (broker) + A (inverter), scale 0.1
    SOAK_SECONDS=3600 SOAK_SCALE=1 make soak    # an hour of the patterns in real time
"""

from __future__ import annotations

import os
import time

import pytest

from modbus_slave.server import Simulator
from server.statemachine import State
from tests.support import NOON, wait_for

from .conftest import open_fds, report, resources
from .proxy import Flapper, schedule
from .test_broker_outages import ConnectWatch, _settle, reconnect_delays
from .test_devices import RECOVERY_BOUND, Polls

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("RELIABILITY_SOAK_S"), reason="soak run: make soak (RELIABILITY_SOAK_S)"),
]


def test_soak_broker_and_inverter_links(mosquitto_factory, proxy_factory, gateway_factory, consumer_factory):
    seconds = float(os.environ["RELIABILITY_SOAK_S"])
    scale = float(os.environ.get("RELIABILITY_SCALE", "0.1"))
    backoff = float(os.environ.get("RELIABILITY_BACKOFF_MAX", "10"))
    broker = mosquitto_factory()
    consumer = consumer_factory(broker)
    mqtt_link = proxy_factory(broker.port)
    sims = [Simulator("sma", clock=lambda: NOON, serial=f"SOAK{i}").start() for i in range(3)]
    try:
        inverter_link = proxy_factory(sims[0].port)
        ports = [inverter_link.port] + [s.port for s in sims[1:]]
        gw = gateway_factory(mqtt_link.port, mqtt__backoff_max=backoff, telemetry__batch_interval=1.0, devices=ports)
        polls = Polls()
        gw.bus.on_snapshot(polls)
        wait_for(lambda: gw.state is State.ONLINE, 15)
        gid = gw.services["identity"].device_id
        watch = ConnectWatch(gw.services["uplink"])
        time.sleep(2)
        before = resources()
        fds_before = open_fds()
        cycles = 10_000  # the time limit ends the run
        broker_flap = Flapper(mqtt_link, schedule("B", scale=scale, cycles=cycles, seed=21)).start()
        inverter_flap = Flapper(inverter_link, schedule("A", scale=scale, cycles=cycles, seed=22)).start()
        time.sleep(seconds)
        broker_flap.stop()
        inverter_flap.stop()
        wait_for(lambda: gw.state is State.ONLINE, backoff + 5)
        last_up = max(inverter_flap.restores(), default=0.0)
        wait_for(lambda: polls.good("dev0", after=last_up), RECOVERY_BOUND + 1)
        time.sleep(3)
        after = _settle(lambda: (r := resources())["threads"] <= before["threads"] and r, resources)
        fds_after = open_fds()
        watch.stop()
        tele, ob = gw.services["telemetry"], gw.services["outbox"]
        wait_for(lambda: ob.store.rows == 0 and tele.pending() == 0, 120)
        last = tele.state.next_seq - 1
        wait_for(lambda: len(consumer.store.sequences(gid)) >= last, 60)
    finally:
        for s in sims:
            s.stop()
    seqs = consumer.store.sequences(gid)
    assert seqs == list(range(1, last + 1)) and not consumer.ledger.gaps(gid)
    reconnects, too_short = reconnect_delays(broker_flap, watch.times, backoff + 1.0)
    recoveries, short_inverter = reconnect_delays(inverter_flap, polls.good("dev0"), RECOVERY_BOUND)
    assert max(reconnects, default=0) < backoff + 1.0, reconnects
    assert max(recoveries, default=0) < RECOVERY_BOUND, recoveries
    new_fds = {fd: what for fd, what in fds_after.items() if fds_before.get(fd) != what}
    assert after["threads"] <= before["threads"] and after["fds"] <= before["fds"] + 2, (
        f"{before} -> {after}; new or changed descriptors: {sorted(new_fds.items())};"
        f" before: {sorted(fds_before.items())}"
    )
    report(
        "soak",
        seconds=seconds,
        scale=scale,
        sequence_numbers=last,
        readings=len(consumer.store.query("SELECT 1 FROM readings")),
        gaps=0,
        stored_duplicates=len(seqs) - len(set(seqs)),
        broker_outages=len(reconnects) + too_short,
        broker_up_phases_too_short_to_judge=too_short,
        reconnect_s_max=round(max(reconnects, default=0), 3),
        inverter_outages=len(recoveries) + short_inverter,
        inverter_up_phases_too_short_to_judge=short_inverter,
        inverter_recovery_s_max=round(max(recoveries, default=0), 3),
        rss_kb_growth=after["rss_kb"] - before["rss_kb"],
        threads=(before["threads"], after["threads"]),
        fds=(before["fds"], after["fds"]),
    )
