"""Footprint of a real gateway process: RSS, threads, start-up time, CPU per reading.

    .venv/bin/python bench/footprint.py [--quick] [--window 20]

Each case starts `python -m server run` as users run it (every default service, the API on 127.0.0.1,
the dashboard WebSocket, a software identity, MQTT to a mosquitto started for the run), with 0, 10 or
50 simulated SMA inverters (`python -m modbus_slave`, its own process, polled every second) stored in
its device list before start. mDNS is off (it would announce beyond loopback). Measured from outside:
- start-up: wall time from just before the process is spawned to /health answering 200, and to the
  first reading (its own timestamp) reaching a subscriber on the broker as part of a signed batch;
- RSS and threads from /proc/<pid>/status after the first readings are published;
- CPU per reading: utime+stime over a window / readings taken in that window (counted from the
  published batches, so every counted reading made it all the way to the broker).
With the default telemetry.batch_interval (10 s) the first reading is published when the first batch
is signed, so the "first reading published" figure is also taken with batch_interval 1 s.
Baselines in the same run: a bare interpreter (start-up to exit, RSS) and an interpreter that only
imports the gateway's dependencies (what pymodbus, paho, flask, waitress, cryptography ... weigh).
Targets: RSS < 60 MB with 10 devices, API answering < 1 s, first reading published < 2 s.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench.common import end_process, write_result  # noqa: E402
from server.devices.store import DeviceConfig, DeviceStore  # noqa: E402
from server.uplink.broker import Broker, free_port  # noqa: E402

PROFILE = "sma"
TICK = os.sysconf("SC_CLK_TCK")
DEPS = "import pymodbus.client, paho.mqtt.client, flask, waitress, cryptography.hazmat.primitives.asymmetric.ec, yaml"


def proc_status(pid: int) -> dict[str, float]:
    """RSS (MB), threads and CPU seconds (user+system) of a live process, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        # Anonymous memory is the process's own; file pages (libraries, .so of cryptography) are shared/reclaimable.
        "rss_anon_mb": int(fields["RssAnon"].split()[0]) / 1024,
        "rss_file_mb": int(fields["RssFile"].split()[0]) / 1024,
        "threads": int(fields["Threads"]),
        "cpu_s": (int(stat[11]) + int(stat[12])) / TICK,  # utime, stime (fields 14, 15)
    }


class Subscriber:
    """Counts the readings inside the signed telemetry batches published to the broker."""

    def __init__(self, port: int) -> None:
        self.times: list[float] = []  # each reading's own timestamp
        self.first_arrival: float | None = None
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"footprint-{os.getpid()}")
        self.client.on_message = self._message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe("ohm/+/telemetry", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("could not subscribe on the loopback broker")

    def _message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        body = msg.payload.split(b".")[1]
        records = json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))["records"]
        with self._lock:
            if self.first_arrival is None:
                self.first_arrival = time.time()
            self.times.extend(float(r["t"]) for r in records)

    def reset(self) -> None:
        """Forget what was seen (next case)."""
        with self._lock:
            self.times.clear()
            self.first_arrival = None

    def count(self, start: float, end: float) -> int:
        """Readings taken in [start, end)."""
        with self._lock:
            return sum(start <= t < end for t in self.times)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def start_sims(n: int) -> tuple[subprocess.Popen[str], list[int]]:
    """n simulated inverters in one child process; their ports."""
    cmd = [sys.executable, "-m", "modbus_slave", "--port", "0", *[a for _ in range(n) for a in ("--profile", PROFILE)]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    ports = []
    for _ in range(n):
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise RuntimeError("simulator process ended early")
        ports.append(int(line.split("127.0.0.1:")[1].split()[0]))
    return proc, ports


def healthy(port: int) -> bool:
    """/health answers 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def run_case(
    ports: list[int],
    broker: int,
    sub: Subscriber,
    tmp: Path,
    window: float,
    batch_interval: float | None,
    python_flags: tuple[str, ...] = (),
) -> dict[str, float]:
    """One gateway process with these devices: start-up times, then RSS/threads/CPU per reading."""
    data = Path(tempfile.mkdtemp(dir=tmp))
    os.chmod(data, 0o700)
    store = DeviceStore(data / "devices.sqlite")
    for i, port in enumerate(ports):
        store.put(
            DeviceConfig.from_dict(
                {"id": f"inv{i}", "profile": PROFILE, "host": "127.0.0.1", "port": port, "interval": 1}
            )
        )
    store.close()
    api = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OHM_")}
    env.update(
        {
            "OHM_DATA_DIR": str(data),
            "OHM_API_HOST": "127.0.0.1",
            "OHM_API_PORT": str(api),
            "OHM_API_WS_PORT": str(free_port()),
            "OHM_MDNS_ENABLED": "false",
            "OHM_NETWORK_WIRED": "true",
            "OHM_IDENTITY_BACKEND": "software",
            "OHM_MQTT_HOST": "127.0.0.1",
            "OHM_MQTT_PORT": str(broker),
            "OHM_LOG_LEVEL": "warning",
            "PYTHONPATH": str(ROOT),
        }
    )
    if batch_interval is not None:
        env["OHM_TELEMETRY_BATCH_INTERVAL"] = str(batch_interval)
    sub.reset()
    log = open(data / "gateway.log", "w")
    t0 = time.time()
    cmd = [sys.executable, *python_flags, "-m", "server", "run"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=log)
    out: dict[str, float] = {}
    try:
        while not healthy(api):
            if proc.poll() is not None or time.time() - t0 > 30:
                raise RuntimeError(f"gateway did not answer /health: {(data / 'gateway.log').read_text()[-2000:]}")
            time.sleep(0.01)
        out["startup_api_s"] = time.time() - t0
        # CPU the process used to get there: far less sensitive to other jobs on the machine than wall time.
        out["startup_api_cpu_s"] = proc_status(proc.pid)["cpu_s"]
        if ports:
            limit = t0 + 30 + (batch_interval or 10.0)
            while sub.first_arrival is None and time.time() < limit:
                time.sleep(0.01)
            if sub.first_arrival is None:
                raise RuntimeError("no reading published within the time limit")
            out["startup_first_reading_s"] = sub.first_arrival - t0
            out["first_poll_s"] = min(sub.times) - t0  # the reading's own timestamp: when it was harvested
        if window <= 0:
            return out
        time.sleep(2.0)  # past the start-up burst (connects, first polls, first batch)
        before, w0 = proc_status(proc.pid), time.time()
        time.sleep(window)
        after, w1 = proc_status(proc.pid), time.time()
        out.update({k: after[k] for k in ("rss_mb", "rss_anon_mb", "rss_file_mb", "threads")})
        out["cpu_pct"] = 100 * (after["cpu_s"] - before["cpu_s"])
        out["cpu_pct"] /= w1 - w0
        if ports:
            time.sleep((batch_interval or 10.0) + 2.0)  # the window's readings are signed and published
            readings = sub.count(w0, w1)
            out["readings"] = readings
            out["cpu_ms_per_reading"] = 1000 * (after["cpu_s"] - before["cpu_s"]) / max(1, readings)
        return out
    finally:
        end_process(proc)
        log.close()
        if python_flags:
            out["log"] = (data / "gateway.log").read_text()  # type: ignore[assignment]


def import_costs(stderr: str, top: int = 10) -> dict[str, float]:
    """`-X importtime` output: total ms of the imports, and the costliest modules imported by the gateway itself."""
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if cumulative.strip().isdigit():
                rows.append((int(cumulative) / 1000, name.rstrip()))
    depth = {n: len(n) - len(n.lstrip()) for _, n in rows}
    total = sum(ms for ms, n in rows if depth[n] == 1)  # top-level entries hold their children's time
    # The first-level entries: what `python -m server run` pulls in directly (site, server.cli, services, ...).
    ranked = sorted(((ms, n.strip()) for ms, n in rows if depth[n] == 1), reverse=True)[:top]
    return {"import_ms_total": total} | {f"import_ms {n}": ms for ms, n in ranked}


HEAVY = (
    "logging",
    "sqlite3",
    "yaml",
    "cryptography.hazmat.primitives.asymmetric.ec",
    "paho.mqtt.client",
    "pymodbus.client",
    "flask",
    "waitress",
    "websockets.asyncio.server",
    "dbus_fast",
    "zeroconf",
    "server.engine",
    "server.cli",
)
_RSS_SCRIPT = """
import importlib, json, sys
def rss():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) / 1024
out = {'interpreter': rss()}
for name in sys.argv[1:]:
    before = rss()
    importlib.import_module(name)
    out[name] = rss() - before
from server.services import default_services
before = rss()
default_services()
out['server services (the rest)'] = rss() - before
out['total'] = rss()
print(json.dumps(out))
"""


def import_rss() -> dict[str, float]:
    """RSS each dependency adds when imported in this order into a fresh interpreter (then all services), MB."""
    res = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, *HEAVY], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return {f"rss_mb {k}": v for k, v in json.loads(res.stdout).items()}


def baseline(code: str) -> dict[str, float]:
    """Start-up to exit and RSS at the end of a fresh interpreter running `code` (median of 3 runs)."""
    # VmRSS, not ru_maxrss: Linux carries the high-water mark across exec, so it would count this parent.
    script = f"{code}\nprint(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
    times, rss = [], []
    for _ in range(3):
        t0 = time.time()
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
        times.append(time.time() - t0)
        rss.append(int(res.stdout.split()[-1]) / 1024)
    return {"start_to_exit_s": statistics.median(times), "rss_mb": statistics.median(rss)}


def main() -> int:
    """Every case, then figures, ratios and targets."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=float, default=20.0, help="seconds of steady state measured per case")
    ap.add_argument("--quick", action="store_true", help="8 s windows")
    args = ap.parse_args()
    window = 8.0 if args.quick else args.window
    bare = baseline("pass")
    deps = baseline(DEPS)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d, Broker(Path(d) / "broker") as broker:
        tmp = Path(d)
        sub = Subscriber(broker.port)
        try:
            traced = run_case([], broker.port, sub, tmp, 0, None, ("-X", "importtime"))
            costs = import_costs(str(traced.pop("log")))
            print(f"imports at start-up (python -X importtime, its own run): {costs['import_ms_total']:.0f} ms in all")
            for k, v in list(costs.items())[1:]:
                print(f"  {v:6.0f} ms  {k.split(' ', 1)[1]}")
            figures.update(costs)
            weights = import_rss()
            print("RSS added by each import, in order, in a fresh interpreter (MB):")
            print("  " + ", ".join(f"{k.split(' ', 1)[1]} {v:.1f}" for k, v in weights.items()))
            figures.update(weights)
            idle = run_case([], broker.port, sub, tmp, window, None)
            runs = [idle, *(run_case([], broker.port, sub, tmp, 0, None) for _ in range(2))]
            starts = [r["startup_api_s"] for r in runs]
            cpus = [r["startup_api_cpu_s"] for r in runs]
            figures["startup_api_s_median_of_3"] = statistics.median(starts)
            figures["startup_api_cpu_s_median_of_3"] = statistics.median(cpus)
            print(
                f"API answering after start, 3 idle starts: {', '.join(f'{s:.2f}' for s in starts)} s wall, "
                f"{', '.join(f'{c:.2f}' for c in cpus)} s CPU of the process"
            )
            figures.update(startup_api_s_idle=idle["startup_api_s"], rss_mb_idle=idle["rss_mb"])
            figures.update(rss_anon_mb_idle=idle["rss_anon_mb"], rss_file_mb_idle=idle["rss_file_mb"])
            figures.update(threads_idle=idle["threads"], cpu_pct_idle=idle["cpu_pct"])
            print(
                f"idle (no device):  RSS {idle['rss_mb']:5.1f} MB ({idle['rss_anon_mb']:.1f} anon, "
                f"{idle['rss_file_mb']:.1f} file), {idle['threads']:.0f} threads, "
                f"CPU {idle['cpu_pct']:.2f}%, API answering after {idle['startup_api_s']:.2f} s"
            )
            for n in (10, 50):
                sims, ports = start_sims(n)
                time.sleep(1.0)  # the simulators' own start-up would otherwise compete with the gateway's
                try:
                    r = run_case(ports, broker.port, sub, tmp, window, None)
                    fast = run_case(ports[:1], broker.port, sub, tmp, 0, 1.0) if n == 10 else None
                finally:
                    sims.terminate()
                    sims.wait(10)
                figures.update(
                    {f"{k}_{n}": r[k] for k in ("rss_mb", "rss_anon_mb", "rss_file_mb", "threads", "cpu_pct")}
                )
                figures[f"cpu_ms_per_reading_{n}"] = r["cpu_ms_per_reading"]
                figures[f"startup_api_s_{n}"] = r["startup_api_s"]
                figures[f"startup_api_cpu_s_{n}"] = r["startup_api_cpu_s"]
                figures[f"first_published_default_batch_s_{n}"] = r["startup_first_reading_s"]
                print(
                    f"{n:2d} devices at 1 s: RSS {r['rss_mb']:5.1f} MB ({r['rss_anon_mb']:.1f} anon, "
                    f"{r['rss_file_mb']:.1f} file), "
                    f"{r['threads']:.0f} threads, "
                    f"CPU {r['cpu_pct']:.1f}% = {r['cpu_ms_per_reading']:.2f} ms per reading "
                    f"({r['readings']:.0f} readings in {window:g} s), API after {r['startup_api_s']:.2f} s "
                    f"({r['startup_api_cpu_s']:.2f} s CPU), "
                    f"first reading polled after {r['first_poll_s']:.2f} s, published after "
                    f"{r['startup_first_reading_s']:.2f} s (default batch interval 10 s)"
                )
                if fast is not None:
                    figures.update(
                        startup_api_s=fast["startup_api_s"], startup_first_reading_s=fast["startup_first_reading_s"]
                    )
                    figures["first_poll_s"] = fast["first_poll_s"]
                    print(
                        f"1 device, batch interval 1 s: API after {fast['startup_api_s']:.2f} s, first reading "
                        f"polled after {fast['first_poll_s']:.2f} s, published after "
                        f"{fast['startup_first_reading_s']:.2f} s"
                    )
        finally:
            sub.close()
    print(
        f"baseline: bare interpreter start->exit {bare['start_to_exit_s']:.3f} s, RSS {bare['rss_mb']:.1f} MB; "
        f"dependencies imported only: {deps['start_to_exit_s']:.3f} s, RSS {deps['rss_mb']:.1f} MB"
    )
    ratios = {
        "rss_idle_vs_deps_only": figures["rss_mb_idle"] / deps["rss_mb"],
        "startup_api_vs_deps_import": figures["startup_api_s_median_of_3"] / deps["start_to_exit_s"],
    }
    print(
        f"ratio:    idle RSS / deps-only RSS {ratios['rss_idle_vs_deps_only']:.2f}; "
        f"API start-up / deps import alone {ratios['startup_api_vs_deps_import']:.2f}"
    )
    targets = {
        "RSS < 60 MB with 10 devices": figures["rss_mb_10"] < 60,
        "API answering < 1 s after start (median of 3)": figures["startup_api_s_median_of_3"] < 1,
        "first reading published < 2 s (batch interval 1 s)": figures["startup_first_reading_s"] < 2,
        "first reading published < 2 s (default batch interval 10 s)": figures["first_published_default_batch_s_10"]
        < 2,
    }
    for name, ok in targets.items():
        print(f"target {name}: {'met' if ok else 'NOT met'}")
    baselines = {f"bare_{k}": v for k, v in bare.items()} | {f"deps_{k}": v for k, v in deps.items()}
    write_result("footprint", figures, baselines, ratios, targets)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
