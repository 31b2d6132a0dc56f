"""Harvest benchmark: CPU per device-read, reads/s and poll lateness for 1, 10 and 50 simulated devices.

The simulators run in a child process (`python -m modbus_slave`), so only the gateway's own work is
measured here. Beside each gateway run, a bare pymodbus loop does the same reads at the same rate in
this process; the ratio gateway/bare is the cost of the engine, lanes, decoding and snapshots.

Targets: 50 devices at 1 Hz under 25% of one core, p99 poll lateness < 100 ms.
Run: .venv/bin/python bench/harvest.py [--seconds 8] [--sizes 1,10,50]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pymodbus.client import ModbusTcpClient

from bench.common import write_result
from server.bus import Bus
from server.devices.plan import plan_profile
from server.devices.profile import load_profile
from server.devices.service import DeviceService
from server.engine import Engine

PROFILE = "sma"


def start_sims(n: int) -> tuple[subprocess.Popen, list[int]]:
    cmd = [sys.executable, "-m", "modbus_slave", "--port", "0", *[a for _ in range(n) for a in ("--profile", PROFILE)]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    ports = []
    assert proc.stdout is not None
    for _ in range(n):
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise RuntimeError("simulator process ended early")
        ports.append(int(line.split("127.0.0.1:")[1].split()[0]))
    return proc, ports


def p99(values: list[float]) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))]


def run_gateway(ports: list[int], seconds: float) -> dict[str, float]:
    engine = Engine(workers=4)
    service = DeviceService(engine, Bus(), None, timeout=1.0)
    engine.start_thread()
    try:
        for i, port in enumerate(ports):
            service.add({"id": f"d{i}", "profile": PROFILE, "host": "127.0.0.1", "port": port, "interval": 1})
        time.sleep(1.5)  # connect and settle
        polls0 = sum(h["polls"] for h in service.health().values())
        for p in service._pollers.values():
            p.lateness.clear()
        cpu0, t0 = time.process_time(), time.monotonic()
        time.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        health = service.health()
        polls = sum(h["polls"] for h in health.values()) - polls0
        failures = sum(h["failures"] for h in health.values())
        late = [x for p in service._pollers.values() for x in p.lateness]
    finally:
        service.close()
        engine.stop()
        engine.wait_stopped(5)
    return {
        "cpu_pct": 100 * cpu / wall,
        "reads_s": polls / wall,
        "cpu_per_read_ms": 1000 * cpu / max(1, polls),
        "p99_late_ms": 1000 * p99(late),
        "failures": failures,
    }


def run_bare(ports: list[int], seconds: float) -> dict[str, float]:
    """The same planned reads with plain pymodbus clients, one pass per second, in one thread."""
    reads = plan_profile(load_profile(PROFILE))
    unit = load_profile(PROFILE).quirks.unit_id
    clients = [ModbusTcpClient("127.0.0.1", port=p, timeout=1.0) for p in ports]
    for c in clients:
        c.connect()
    polls = 0
    try:
        cpu0, t0 = time.process_time(), time.monotonic()
        nxt = t0
        while time.monotonic() - t0 < seconds:
            for c in clients:
                for r in reads:
                    fn = c.read_holding_registers if r.fc == 3 else c.read_input_registers
                    fn(r.address, count=r.count, device_id=unit)
                polls += 1
            nxt += 1.0
            time.sleep(max(0.0, nxt - time.monotonic()))
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    finally:
        for c in clients:
            c.close()
    return {"cpu_pct": 100 * cpu / wall, "reads_s": polls / wall, "cpu_per_read_ms": 1000 * cpu / max(1, polls)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    ap.add_argument("--sizes", default="1,10,50", help="device counts")
    args = ap.parse_args()
    print(f"harvest bench: profile {PROFILE}, 1 s interval, {args.seconds:g} s per run, {os.cpu_count()} cores")
    print(
        f"{'devices':>7} | {'gw cpu%':>7} {'reads/s':>7} {'ms/read':>7} {'p99 late':>8} | "
        f"{'bare cpu%':>9} {'ms/read':>7} | {'ratio':>5}"
    )
    worst = {}
    figures: dict[str, float] = {}
    baseline: dict[str, float] = {}
    ratios: dict[str, float] = {}
    for n in [int(x) for x in args.sizes.split(",")]:
        proc, ports = start_sims(n)
        try:
            gw = run_gateway(ports, args.seconds)
            bare = run_bare(ports, args.seconds)
        finally:
            proc.terminate()
            proc.wait(5)
        ratio = gw["cpu_per_read_ms"] / max(1e-9, bare["cpu_per_read_ms"])
        print(
            f"{n:>7} | {gw['cpu_pct']:>6.1f}% {gw['reads_s']:>7.1f} {gw['cpu_per_read_ms']:>7.3f} "
            f"{gw['p99_late_ms']:>6.1f}ms | {bare['cpu_pct']:>8.1f}% {bare['cpu_per_read_ms']:>7.3f} | {ratio:>5.2f}"
            + (f"  ({gw['failures']:.0f} failed polls)" if gw["failures"] else "")
        )
        worst = gw
        figures.update({f"{n}dev_{k}": v for k, v in gw.items()})
        baseline.update({f"{n}dev_{k}": v for k, v in bare.items()})
        ratios[f"{n}dev_cpu_per_read"] = ratio
    if worst:
        ok = worst["cpu_pct"] < 25 and worst["p99_late_ms"] < 100
        targets = {
            "largest run: cpu < 25% of a core": worst["cpu_pct"] < 25,
            "largest run: p99 lateness < 100 ms": worst["p99_late_ms"] < 100,
        }
        write_result("harvest", figures, baseline, ratios, targets)
        print(
            f"target (largest run): cpu < 25% and p99 lateness < 100 ms: {'met' if ok else 'NOT met'} "
            f"({worst['cpu_pct']:.1f}%, {worst['p99_late_ms']:.1f} ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
