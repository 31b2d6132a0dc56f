import time

from server.bus import Point, Snapshot
from server.config import load
from server.crypto.service import attach as identity
from server.gateway import Gateway
from server.outbox.service import attach as outbox
from server.telemetry.service import attach as telemetry
from server.telemetry.verify import Ledger


def _run(tmp_path, n):
    cfg = load(None, env={}, overrides={"data_dir": tmp_path, "stats_interval": 0, "telemetry.batch_interval": 0.05})
    gw = Gateway(cfg, services=[identity, outbox, telemetry])
    gw.start()
    gw.engine.start_thread()
    for i in range(n):
        gw.bus.publish(Snapshot("d", time.time(), time.monotonic(), True, {"n": Point(i, "")}))
    time.sleep(0.2)
    gw.stop()
    gw.engine.wait_stopped(5)
    return gw


def test_sequence_and_chain_survive_restart(tmp_path):
    first = _run(tmp_path, 5)
    second = _run(tmp_path, 3)
    assert first.services["identity"].device_id == second.services["identity"].device_id
    from server.outbox.store import OutboxStore

    store = OutboxStore(tmp_path / "outbox.sqlite")
    rows = store.take(100)
    store.close()
    ledger = Ledger()
    verdicts = [ledger.check(r.payload.decode()) for r in rows]
    assert all(v.ok for v in verdicts), [v.problems for v in verdicts]
    gid = first.services["identity"].device_id
    assert ledger.counts[gid]["records"] == 8 and ledger.gaps(gid) == []
