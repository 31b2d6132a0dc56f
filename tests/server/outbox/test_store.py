import sqlite3

import pytest

from server.outbox.store import PRIO_LIVE, PRIO_RESULT, OutboxStore


@pytest.fixture
def store(tmp_path):
    s = OutboxStore(tmp_path / "o.sqlite", max_bytes=10_000, max_age=100.0)
    yield s
    s.close()


def test_wal_mode_and_reopen_keeps_rows_and_meta(tmp_path):
    s = OutboxStore(tmp_path / "o.sqlite")
    s.put("t", b"x" * 10, now=1.0, meta={"next_seq": 7})
    s.close()
    s = OutboxStore(tmp_path / "o.sqlite")
    assert s.rows == 1 and s.bytes == 11 and s.get_meta("next_seq") == 7
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.close()


def test_priority_and_live_backlog_split(store):
    old = store.put("t", b"old", now=10.0)[0]
    new = store.put("t", b"new", now=95.0)[0]
    res = store.put("r", b"result", prio=PRIO_RESULT, now=11.0)[0]
    assert [r.id for r in store.take(10)] == [res, old, new]
    # live: results and recent rows; backlog: old telemetry only
    assert [r.id for r in store.take(10, created_after=90.0)] == [res, new]
    assert [r.id for r in store.take(10, created_before=90.0)] == [old]
    assert [r.id for r in store.take(10, exclude={res, old})] == [new]
    assert store.delete([old, 999]) == 1 and store.rows == 2


# Table: (puts as (size, created, prio), now of the last put) -> rows left, dropped
BOUNDS = [
    ("under bounds", [(1000, 50, PRIO_LIVE)] * 5, 5, 0),
    ("bytes: drop oldest", [(3000, 50, PRIO_LIVE)] * 5, 3, 2),
    ("age: drop expired", [(100, 1, PRIO_LIVE), (100, 1, PRIO_LIVE), (100, 150, PRIO_LIVE)], 1, 2),
    ("results are kept", [(3000, 1, PRIO_RESULT)] * 2 + [(3000, 150, PRIO_LIVE)] * 3, 3, 2),
]


@pytest.mark.parametrize("name,puts,left,dropped", BOUNDS, ids=[b[0] for b in BOUNDS])
def test_bounds_drop_oldest_and_count(store, name, puts, left, dropped):
    total = 0
    for size, created, prio in puts:
        total += store.put("t", b"x" * (size - 1), prio=prio, now=created)[1]
    assert store.rows == left
    assert store.dropped == total == dropped
    assert store.get_meta("dropped", "0") in (dropped, str(dropped), "0")
    assert store.bytes == store._db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0]


def test_drop_count_persists(tmp_path):
    s = OutboxStore(tmp_path / "o.sqlite", max_bytes=5000)
    for _ in range(4):
        s.put("t", b"x" * 2000, now=1.0)
    assert s.dropped == 2
    s.close()
    assert OutboxStore(tmp_path / "o.sqlite").dropped == 2


def test_remember_command_detects_replay_until_expiry(store):
    assert store.remember_command("a", exp=100.0, now=1.0)
    assert not store.remember_command("a", exp=100.0, now=2.0)
    assert store.remember_command("a", exp=300.0, now=101.0)  # expired ids are forgotten


def test_integrity_after_many_writes(store, tmp_path):
    for i in range(200):
        store.put("t", b"y" * 100, now=float(i % 50))
    db = sqlite3.connect(tmp_path / "o.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
