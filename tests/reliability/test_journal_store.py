"""The outbox's journal and disk-full handling, on the store itself (no engine)."""

from __future__ import annotations

from pathlib import Path

from server.outbox.store import OutboxStore


def _recs(n: int, start: int = 0) -> list[dict]:
    return [{"d": "inv", "t": float(i), "v": {"n": i}} for i in range(start, start + n)]


def test_journal_survives_reopen_and_leaves_with_its_batch(tmp_path: Path) -> None:
    store = OutboxStore(tmp_path / "o.sqlite")
    store.journal_add(_recs(5))
    store.close()  # a crash before the batch: the journal is all there is
    store = OutboxStore(tmp_path / "o.sqlite")
    assert store.journal_rows == 5
    recs, upto = store.journal_take(3)
    assert [r["v"]["n"] for r in recs] == [0, 1, 2]
    store.put("t/telemetry", b"batch", now=1.0, meta={"next_seq": 4}, journal_upto=upto)
    assert store.journal_rows == 2 and store.rows == 1 and store.get_meta("next_seq") == 4
    recs, _ = store.journal_take(10)
    assert [r["v"]["n"] for r in recs] == [3, 4]  # the rest, in order
    store.close()


def test_a_failed_batch_keeps_its_journal_rows(tmp_path: Path) -> None:
    store = OutboxStore(tmp_path / "o.sqlite")
    store.journal_add(_recs(3))
    _, upto = store.journal_take(3)
    try:
        store.put("t/telemetry", None, now=1.0, journal_upto=upto)  # type: ignore[arg-type]
    except (AttributeError, TypeError):
        pass
    assert store.journal_rows == 3 and store.rows == 0
    store.close()


def test_sqlite_full_drops_the_oldest_telemetry_and_retries(tmp_path: Path) -> None:
    store = OutboxStore(tmp_path / "o.sqlite")
    store.put("gw/cmd/result", b"r" * 2000, prio=0, now=0.0)  # command results are never dropped
    for i in range(40):
        store.put("gw/telemetry", bytes([i]) * 3000, now=float(i))
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages}")  # SQLite answers SQLITE_FULL from here on
    for i in range(40, 80):
        store.put("gw/telemetry", bytes([i]) * 3000, now=float(i))
    assert store.disk_full > 0 and store.dropped > 0
    kept = store.take(1000)
    assert kept[0].topic == "gw/cmd/result"
    tele = [r.payload[0] for r in kept if r.topic == "gw/telemetry"]
    assert tele == sorted(tele) and tele[-1] == 79  # the newest kept, the oldest gone
    assert not store.reserve_path.exists() or store.disk_full == 0
    store.close()
