"""The loss window of kill -9, measured: readings polled (handed to the bus) but not committed when killed.

Before the journal, everything since the last batch (up to telemetry.batch_interval, 10 s) was lost;
now a reading is committed within a lane hop of its poll. The test keeps the production batch
interval and reports both numbers: what the journal held unbatched (the old loss) and what was lost.
"""

from __future__ import annotations

import base64
import json
import random
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import report

pytestmark = pytest.mark.integration

PROC = Path(__file__).with_name("feeder_proc.py")
RATE = 200.0  # readings/s: 20 devices at 10 Hz worth of polls, far above a real installation
BATCH_INTERVAL = 10.0  # the production default


def _committed(data: Path) -> tuple[list[int], int]:
    """Counters committed (journal and signed batches), and how many of them were still only journaled."""
    db = sqlite3.connect(f"file:{data / 'outbox.sqlite'}?mode=ro", uri=True)
    try:
        journal = [json.loads(r)["v"]["n"] for (r,) in db.execute("SELECT rec FROM journal")]
        batched: list[int] = []
        for (payload,) in db.execute("SELECT payload FROM outbox WHERE topic LIKE '%/telemetry'"):
            body = payload.split(b".")[1]
            recs = json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))["records"]
            batched += [r["v"]["n"] for r in recs]
        return batched + journal, len(journal)
    finally:
        db.close()


def test_kill_9_loses_at_most_the_readings_in_flight_to_the_journal(tmp_path):
    rng = random.Random(5)
    results = []
    for life in range(3):
        data, counter = tmp_path / f"gw{life}", tmp_path / f"counter{life}"
        proc = subprocess.Popen(
            [sys.executable, str(PROC), str(data), str(RATE), str(BATCH_INTERVAL), str(counter)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(1.0, 2.0))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
            proc.stdout.close()  # type: ignore[union-attr]
        polled = struct.unpack("<q", counter.read_bytes()[:8])[0] + 1
        committed, unbatched = _committed(data)
        assert committed == list(range(len(committed)))  # a prefix: in order, no hole, no double
        results.append((polled, polled - len(committed), unbatched))
    lost = [r[1] for r in results]
    # In flight = published after the last journal commit began: a few ms of polls on a loaded machine.
    assert max(lost) <= RATE * 0.25, results
    assert all(r[2] > 0.5 * RATE for r in results)  # the old design would have lost these (no batch yet)
    report(
        "kill9_loss_window",
        rate_per_s=RATE,
        batch_interval_s=BATCH_INTERVAL,
        polled=[r[0] for r in results],
        lost_now=lost,
        lost_without_journal=[r[2] + r[1] for r in results],
    )
