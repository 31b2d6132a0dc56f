"""API benchmark: requests/s and p50/p99 of GET /api/hello and /api/state vs a bare Flask+waitress hello route.

    python bench/api.py

One process: a gateway with the API on loopback harvesting 10 simulated Modbus devices (1 s interval), and beside it a
bare Flask app with one hello route on the same waitress setup (the baseline). Each case sends 2000 requests over
keep-alive http.client connections from 1 and from 10 client threads. Issue 5 target: /api/state with 10 clients
>= 500 req/s and p99 < 50 ms.
"""

from __future__ import annotations

import http.client
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flask import Flask, jsonify  # noqa: E402

from bench.common import write_result  # noqa: E402
from modbus_slave.server import Simulator  # noqa: E402
from server.api import attach as api  # noqa: E402
from server.api.server import ApiServer  # noqa: E402
from server.api.tokens import load_or_create  # noqa: E402
from server.config import load  # noqa: E402
from server.crypto.service import attach as identity  # noqa: E402
from server.devices import attach as devices  # noqa: E402
from server.gateway import Gateway  # noqa: E402

REQUESTS = 2000
DEVICES = 10
THREADS = 4  # waitress worker threads, the same for the API and the baseline (api.threads default)


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(port: int, path: str, clients: int, token: str | None) -> tuple[float, list[float]]:
    """Send REQUESTS GETs split over `clients` threads, each on one keep-alive connection; (req/s, latencies s)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    per = REQUESTS // clients
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", path, headers=headers)  # warm the connection before the clock starts
            conn.getresponse().read()
            start.wait()
            mine = lat[i]
            for _ in range(per):
                t0 = time.perf_counter()
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                mine.append(time.perf_counter() - t0)
                if resp.status != 200:
                    errors.append(f"{path}: HTTP {resp.status}")
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"errors: {errors[:3]} ({len(errors)} in all)")
    flat = [x for xs in lat for x in xs]
    return len(flat) / elapsed, flat


def pct(xs: list[float], q: float) -> float:
    """The q-quantile of xs in milliseconds."""
    return statistics.quantiles(xs, n=100, method="inclusive")[int(q) - 1] * 1000 if q < 100 else max(xs) * 1000


def main() -> None:
    """Start everything on loopback, run every case, print figures and ratios to the baseline."""
    baseline = Flask("baseline")

    @baseline.get("/hello")
    def hello() -> object:
        return jsonify({"message": "hello"})

    bare = ApiServer(baseline, "127.0.0.1", 0, threads=THREADS).start()
    sims = [Simulator("sma").start() for _ in range(DEVICES)]
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        overrides = {
            "data_dir": Path(tmp) / "gw",
            "stats_interval": 0,
            "identity.backend": "software",
            "api.host": "127.0.0.1",
            "api.port": port,
            "api.threads": THREADS,
        }
        gw = Gateway(load(None, env={}, overrides=overrides), services=[devices, identity, api])
        try:
            gw.start()
            gw.engine.start_thread()
            tokens, _ = load_or_create(gw.data_dir)
            svc = gw.services["devices"]
            added = threading.Semaphore(0)
            for i, sim in enumerate(sims):
                dev = {"id": f"inv{i}", "profile": "sma", "host": "127.0.0.1", "port": sim.port, "interval": 1}
                svc.add(dev, lambda _outcome: added.release())
            for _ in sims:
                added.acquire(timeout=10)
            time.sleep(1.5)  # let every device be polled once so /api/state and the bus are in steady state
            cases = [
                ("bare Flask /hello", bare.port, "/hello", None),
                ("API /api/hello", port, "/api/hello", None),
                ("API /api/state", port, "/api/state", tokens.read),
            ]
            print(f"{REQUESTS} requests per case, keep-alive, waitress threads={THREADS}, {DEVICES} devices harvested")
            print(f"{'case':<20} {'clients':>7} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'vs bare':>8}")
            base: dict[int, float] = {}
            figures: dict[str, float] = {}
            baseline: dict[str, float] = {}
            ratios: dict[str, float] = {}
            targets: dict[str, bool] = {}
            for clients in (1, 10):
                for label, p, path, token in cases:
                    rate, lat = run(p, path, clients, token)
                    base.setdefault(clients, rate)
                    ratio = rate / base[clients]
                    p50, p99 = pct(lat, 50), pct(lat, 99)
                    print(f"{label:<20} {clients:>7} {rate:>8.0f} {p50:>7.2f} {p99:>7.2f} {ratio:>7.2f}x")
                    into = baseline if token is None and p == bare.port else figures
                    key = f"{path.strip('/').replace('/', '_')}_c{clients}"
                    into.update({f"{key}_req_s": rate, f"{key}_p50_ms": p50, f"{key}_p99_ms": p99})
                    if into is figures:
                        ratios[f"{key}_time_per_request"] = 1 / ratio  # cost vs bare: >1 slower
                    if path == "/api/state" and clients == 10:
                        ok = rate >= 500 and p99 < 50
                        targets["/api/state @10 clients >= 500 req/s, p99 < 50 ms"] = ok
                        print(f"  target /api/state @10 clients >= 500 req/s, p99 < 50 ms: {'met' if ok else 'MISSED'}")
            polls = sum(h["polls"] for h in (svc.health(f"inv{i}") for i in range(DEVICES)))
            print(f"device polls during the run: {polls}")
            write_result("api", figures, baseline, ratios, targets)
        finally:
            gw.stop()
            gw.engine.wait_stopped(5)
            bare.stop()
            for sim in sims:
                sim.stop()


if __name__ == "__main__":
    main()
