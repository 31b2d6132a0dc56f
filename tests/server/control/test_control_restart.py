"""kill -9 of a real gateway process: a timed action still reverts, a schedule still runs, after a restart."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modbus_slave.server import Simulator
from tests.support import wait_for

from .conftest import limit_w

pytestmark = pytest.mark.integration
PROC = Path(__file__).with_name("gateway_proc.py")


class Procs:
    """Gateway processes started by a test; every one is killed at the end."""

    def __init__(self) -> None:
        self.items: list[subprocess.Popen[str]] = []

    def spawn(self, data: Path, port: int, *args: str) -> tuple[subprocess.Popen[str], str]:
        """Start one and wait for its "ready" line; returns it and the rest of that line."""
        proc = subprocess.Popen(
            [sys.executable, str(PROC), str(data), str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.items.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[:1] == ["ready"], line
        return proc, " ".join(line[1:])


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        for proc in p.items:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()


def kill9(proc: subprocess.Popen[str]) -> None:
    """The hard way: no shutdown hooks, no flush."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)


def stored_state(data: Path, action_id: str) -> str:
    """The action's state in the control store, read from another process."""
    db = sqlite3.connect(data / "control.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return db.execute("SELECT state FROM actions WHERE id = ?", (action_id,)).fetchone()[0]
    finally:
        db.close()


def test_timed_action_reverts_after_kill_9_and_restart(tmp_path: Path, sim: Simulator, procs: Procs) -> None:
    data = tmp_path / "gw"
    proc, action_id = procs.spawn(data, sim.port, "hold", "2")
    assert limit_w(sim) == 1234 and stored_state(data, action_id) == "active"
    kill9(proc)
    time.sleep(2.5)  # the revert falls due while no gateway runs
    assert limit_w(sim) == 1234
    procs.spawn(data, sim.port, "run")
    wait_for(lambda: limit_w(sim) == 100000, timeout=10)  # overdue: reverted at once on start
    wait_for(lambda: stored_state(data, action_id) == "reverted", timeout=5)


def test_schedule_survives_kill_9(tmp_path: Path, sim: Simulator, procs: Procs) -> None:
    data = tmp_path / "gw"
    proc, action_id = procs.spawn(data, sim.port, "at", "3")
    kill9(proc)
    assert limit_w(sim) == 100000
    procs.spawn(data, sim.port, "run")
    wait_for(lambda: limit_w(sim) == 1234, timeout=10)
    wait_for(lambda: stored_state(data, action_id) == "done", timeout=5)
