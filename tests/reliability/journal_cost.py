"""What journaling every poll costs: one journal commit (WAL, synchronous=NORMAL) per poll burst, against
the same commit with synchronous=FULL and against keeping readings in memory only (the old design).

    python -m tests.reliability.journal_cost [--n 2000] [--dir /var/lib/ohm]   # dir: the disk to measure
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from server.outbox.store import OutboxStore

RECORD = {
    "d": "inv1",
    "t": 1763900000.0,
    "on": True,
    "v": {"inverter.power_w": 4800.0, "grid.power_w": -1200.0},
    "u": {"inverter.power_w": "W", "grid.power_w": "W"},
    "p": "sma",
}


def _per_commit(store: OutboxStore, n: int, sync: str) -> float:
    """Seconds per one-record journal commit with the given synchronous mode (same statements each way)."""
    db = store._db  # measuring the store's own connection
    db.execute(f"PRAGMA synchronous={sync}")
    t0 = time.perf_counter()
    for i in range(n):
        with store._tx() as tx:
            tx.execute("INSERT INTO journal (rec) VALUES (?)", (json.dumps(RECORD),))
        if i % 500 == 499:  # keep the journal small, as batches do
            db.execute("DELETE FROM journal")
    db.execute("PRAGMA synchronous=FULL")
    return (time.perf_counter() - t0) / n


def _journal_add(store: OutboxStore, n: int) -> float:
    """Seconds per production journal_add of one record (NORMAL, switched back to FULL after)."""
    t0 = time.perf_counter()
    for i in range(n):
        store.journal_add([RECORD])
        if i % 500 == 499:
            store._db.execute("DELETE FROM journal")
    return (time.perf_counter() - t0) / n


def main() -> None:
    """Print microseconds per journal commit (NORMAL, FULL) and per in-memory append, and the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        store = OutboxStore(Path(tmp) / "outbox.sqlite")
        normal = _per_commit(store, args.n, "NORMAL")
        full = _per_commit(store, args.n, "FULL")
        add = _journal_add(store, args.n)
        store.close()
    mem: list[dict] = []
    t0 = time.perf_counter()
    for _ in range(args.n):
        mem.append(dict(RECORD))
    memory = (time.perf_counter() - t0) / args.n
    print(f"journal commit, synchronous=NORMAL: {normal * 1e6:8.1f} us")
    print(f"same commit, synchronous=FULL:      {full * 1e6:8.1f} us  ({full / normal:.1f}x NORMAL)")
    print(f"journal_add as the gateway calls it: {add * 1e6:8.1f} us")
    print(f"in memory only (old design):        {memory * 1e6:8.1f} us  (journal_add = {add / memory:.0f}x)")
    print(f"at 10 devices polled every second: {10 * add * 100:.3f} % of the outbox lane's time (wall clock)")


if __name__ == "__main__":
    main()
