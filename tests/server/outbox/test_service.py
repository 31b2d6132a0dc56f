import time

from server.bus import Bus
from server.engine import Engine
from server.outbox.service import Outbox
from server.outbox.store import OutboxStore


def test_drops_are_reported_once_as_a_device_event(tmp_path):
    engine = Engine()
    bus = Bus()
    events = []
    bus.on_event(events.append)
    outbox = Outbox(engine, bus, OutboxStore(tmp_path / "o.sqlite", max_bytes=5000))
    woken = []
    outbox.on_new(lambda: woken.append(1))
    engine.start_thread()
    try:
        for _ in range(6):
            outbox.run(lambda s: outbox.added(s.put("t", b"x" * 2000, now=time.time())[1]), kind="test.put")
        deadline = time.monotonic() + 5
        while not events and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        engine.stop()
        engine.wait_stopped(5)
        outbox.close()
    assert len(woken) == 6
    assert [e.kind for e in events] == ["outbox_dropped"]
    assert events[0].detail["dropped"] == 4 and events[0].detail["total_dropped"] == 4
