"""Run every benchmark through one harness: results in the common JSON shape, a summary table and a chart.

    .venv/bin/python bench/run.py                 # all of them (what `make bench` runs), ~10 min on 2 cores
    .venv/bin/python bench/run.py --quick         # shorter runs of each (fewer seconds/records), ~4 min
    .venv/bin/python bench/run.py --only footprint,soak_day
    .venv/bin/python bench/run.py --report        # table and chart from the results already there

Each benchmark runs as its own process (a fresh interpreter: no warm caches or threads left from the
previous one) and prints its own figures and same-run baselines. harvest, uplink, api, footprint and
soak_day write `bench/results/<name>.json` themselves (bench/common.py); engine.py writes its own shape,
and ble.py only prints, so this harness turns those into the common shape. The chart needs matplotlib
(`pip install -e '.[bench]'`); without it the table is still printed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, end_process, read_result, write_result  # noqa: E402


@dataclass
class Bench:
    """One benchmark script, its arguments (full and quick) and, if it does not write the common shape, an adapter."""

    name: str
    script: str
    args: list[str] = field(default_factory=list)
    quick: list[str] = field(default_factory=list)
    adapt: Callable[[str], None] | None = None  # gets the script's stdout, writes results/<name>.json
    timeout: float = 1800.0


def adapt_engine(_stdout: str) -> None:
    """engine.py's own JSON (written to engine.raw.json by our --json) in the common shape."""
    source = RESULTS / "engine.raw.json"
    raw = json.loads(source.read_text())
    tp, st, late, idle = raw["throughput"], raw["steady"], raw["lateness"], raw["idle"]
    write_result(
        "engine",
        {
            "tasks_s_deep_queue": tp["engine"],
            "tasks_s_steady": st["engine"],
            "lateness_p50_ms": late["engine"]["p50_ms"],
            "lateness_p99_ms": late["engine"]["p99_ms"],
            "idle_cpu_pct": idle["cpu_pct"],
        },
        {
            "heapq_tasks_s_deep_queue": tp["bare_heapq"],
            "sched_tasks_s_deep_queue": tp["sched"],
            "heapq_tasks_s_steady": st["bare_heapq"],
            "sched_lateness_p50_ms": late["sched"]["p50_ms"],
            "sched_lateness_p99_ms": late["sched"]["p99_ms"],
        },
        {
            # engine.py's ratio_vs_heapq is heapq rate / engine rate: already time per task, engine over bare.
            "time_per_task_vs_heapq_deep": tp["ratio_vs_heapq"],
            "time_per_task_vs_heapq_steady": st["ratio_vs_heapq"],
            "time_per_task_vs_sched": tp["sched"] / tp["engine"],
            "p99_lateness_vs_sched": late["engine"]["p99_ms"] / late["sched"]["p99_ms"],
        },
        raw.get("targets", {}),
        notes="converted from bench/engine.py's own JSON; machine load is at conversion time",
        when=source.stat().st_mtime,  # when engine.py measured, not when this ran
    )


def adopt_engine_json() -> None:
    """engine.py run on its own writes its own shape to engine.json: keep that as engine.raw.json, then convert."""
    path = RESULTS / "engine.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(raw, dict) and "throughput" in raw:
        path.replace(RESULTS / "engine.raw.json")
        adapt_engine("")


_BLE_CASE = re.compile(
    r"MTU\s+(\d+) GET (\S+)\s+reply\s+(\d+) B.*?ohm p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms"
    r"\s*\|\s*bare GATT p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms\s*\|\s*ratio\s+([\d.]+)x"
)
_BLE_FLOW = re.compile(r"full provisioning \(scan to Wi-Fi answer\): ([\d.]+) ms")


def adapt_ble(stdout: str) -> None:
    """ble.py prints its figures only; the lines it prints, parsed into the common shape."""
    figures: dict[str, float] = {}
    baseline: dict[str, float] = {}
    ratio: dict[str, float] = {}
    for m in _BLE_CASE.finditer(stdout):
        mtu, path, size = m.group(1), m.group(2).rsplit("/", 1)[-1].replace(".", "_"), float(m.group(3))
        key = f"mtu{mtu}_{path}"
        figures.update(
            {f"{key}_reply_bytes": size, f"{key}_p50_ms": float(m.group(4)), f"{key}_p99_ms": float(m.group(5))}
        )
        baseline.update({f"{key}_p50_ms": float(m.group(6)), f"{key}_p99_ms": float(m.group(7))})
        ratio[f"{key}_time"] = float(m.group(8))  # median Ohm channel / median bare GATT, as ble.py prints it
    flow = _BLE_FLOW.search(stdout)
    if flow:
        figures["provisioning_ms"] = float(flow.group(1))
    if not figures:
        raise ValueError("no figures found in ble.py's output (its print format changed?)")
    write_result("ble", figures, baseline, ratio, {}, notes="parsed from bench/ble.py's output by bench/run.py")


BENCHES = [
    Bench("engine", "engine.py", ["--json", str(RESULTS / "engine.raw.json")], ["--tasks", "50000", "--seconds", "2"],
          adapt=adapt_engine),
    Bench("harvest", "harvest.py", [], ["--seconds", "3", "--sizes", "1,10"]),
    Bench("uplink", "uplink.py", [], ["--records", "5000"]),
    Bench("api", "api.py"),
    Bench("ble", "ble.py", adapt=adapt_ble),
    Bench("footprint", "footprint.py", [], ["--quick"]),
    Bench("soak_day", "soak_day.py", [], ["--hours", "6"]),
]  # fmt: skip


def run_one(bench: Bench, quick: bool) -> tuple[int, float, str]:
    """Run one script, echoing its output as it comes; (exit code, seconds, stdout)."""
    cmd = [sys.executable, str(ROOT / "bench" / bench.script), *bench.args, *(bench.quick if quick else [])]
    print(f"\n=== {bench.name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.monotonic()
    out: list[str] = []
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                print(f"  {line}", end="", flush=True)
                out.append(line)
                if time.monotonic() - t0 > bench.timeout:
                    raise TimeoutError
            code = proc.wait()
        except (TimeoutError, KeyboardInterrupt):
            end_process(proc)
            print(f"  {bench.name}: stopped after {time.monotonic() - t0:.0f} s", flush=True)
            code = -1
    return code, time.monotonic() - t0, "".join(out)


def fmt(value: Any) -> str:
    """A number for the table, compact."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def summary(rows: list[dict[str, Any]]) -> str:
    """The table: per benchmark, status, targets met, its ratios (cost over baseline) and a few figures."""
    lines = [f"{'bench':<10} {'status':<8} {'secs':>5} {'targets':>7}  ratios (cost / baseline, 1.0 = as cheap)"]
    for row in rows:
        data = row.get("data") or {}
        targets = data.get("targets", {})
        met = f"{sum(targets.values())}/{len(targets)}" if targets else "-"
        ratios = ", ".join(f"{k} {fmt(v)}" for k, v in data.get("ratio", {}).items()) or "-"
        secs = f"{row['secs']:.0f}" if row.get("secs") is not None else "-"
        lines.append(f"{row['name']:<10} {row['status']:<8} {secs:>5} {met:>7}  {ratios}")
        missed = [k for k, ok in targets.items() if not ok]
        if missed:
            lines.append(f"{'':<10} missed: {'; '.join(missed)}")
    fp = next((r.get("data") for r in rows if r["name"] == "footprint" and r.get("data")), None)
    if fp:
        keys = [k for k in fp["figures"] if k.startswith(("rss_mb_", "threads_", "startup_", "cpu_ms_per_reading_"))]
        lines.append("footprint: " + ", ".join(f"{k} {fmt(fp['figures'][k])}" for k in keys))
    return "\n".join(lines)


def chart(rows: list[dict[str, Any]], path: Path) -> str:
    """Ratios of every benchmark (log scale) and the footprint against its targets, as one PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return "chart: matplotlib is not installed (pip install -e '.[bench]'); table only"
    ratios = [(f"{r['name']}: {k}", v) for r in rows for k, v in (r.get("data") or {}).get("ratio", {}).items() if v]
    fp = next((r["data"]["figures"] for r in rows if r["name"] == "footprint" and r.get("data")), {})
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, max(4.0, 0.32 * len(ratios) + 1.5)), width_ratios=[3, 2])
    if ratios:
        labels, values = zip(*ratios, strict=True)
        colors = ["tab:green" if v <= 1.5 else "tab:orange" if v <= 5 else "tab:red" for v in values]
        left.barh(range(len(values)), values, color=colors)
        left.set_yticks(range(len(values)), labels, fontsize=7)
        left.invert_yaxis()
        left.set_xscale("log")
        left.axvline(1.0, color="black", linewidth=0.8)
        left.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%gx"))
        left.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        for i, v in enumerate(values):
            left.text(v, i, f" {v:.2f}x", va="center", fontsize=7)
    left.set_title("cost against the same-run baseline (1.0 = as cheap as the bare thing)", fontsize=9)
    bars = [  # (label, value, target) - the footprint targets
        ("RSS idle, MB", fp.get("rss_mb_idle"), None),
        ("RSS 10 devices, MB", fp.get("rss_mb_10"), 60.0),
        ("RSS 50 devices, MB", fp.get("rss_mb_50"), None),
        ("API answers /health (s x10)", _times(fp.get("startup_api_s_median_of_3"), 10), 10.0),
        ("1st reading published, batch 1 s (s x10)", _times(fp.get("startup_first_reading_s"), 10), 20.0),
        ("1st reading published, batch 10 s (s x10)", _times(fp.get("first_published_default_batch_s_10"), 10), 20.0),
    ]
    bars = [b for b in bars if b[1] is not None]
    if bars:
        right.barh(range(len(bars)), [b[1] for b in bars], color="tab:blue")
        right.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
        right.invert_yaxis()
        for i, (_, value, target) in enumerate(bars):
            shown = value / 10 if "x10" in bars[i][0] else value  # the start-up bars are drawn x10 to share the axis
            right.text(value, i, f" {shown:.2f} s" if "x10" in bars[i][0] else f" {value:.1f}", va="center", fontsize=8)
            if target is not None:
                right.plot([target, target], [i - 0.4, i + 0.4], color="red", linewidth=2)
    right.set_title("footprint of `python -m server` (red: target)", fontsize=9)
    whens = sorted(r["data"]["when"] for r in rows if r.get("data"))
    span = f"{whens[0]} to {whens[-1]}" if whens and whens[0] != whens[-1] else "".join(whens[:1])
    fig.suptitle(f"Ohm gateway benchmarks, results of {span}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart: {path}"


def _times(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def main() -> int:
    """Run the chosen benchmarks, then print the table and draw the chart."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter runs of every benchmark")
    ap.add_argument("--only", default="", help="comma-separated names: " + ",".join(b.name for b in BENCHES))
    ap.add_argument("--report", action="store_true", help="no runs: table and chart from existing results")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or [b.name for b in BENCHES]
    unknown = sorted(set(names) - {b.name for b in BENCHES})
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)}")
    rows: list[dict[str, Any]] = []
    failed = 0
    for bench in BENCHES:
        path = RESULTS / f"{bench.name}.json"
        if args.report or bench.name not in names:
            if bench.name == "engine" and read_result(path) is None:
                adopt_engine_json()
            data = read_result(path)
            if data is not None:
                rows.append({"name": bench.name, "status": "earlier", "secs": None, "data": data})
            continue
        started = time.time()
        code, secs, stdout = run_one(bench, args.quick)
        status = "ok" if code == 0 else f"rc {code}"
        if code == 0 and bench.adapt is not None:
            try:
                bench.adapt(stdout)
            except (OSError, ValueError, KeyError) as exc:
                status = "no data"
                print(f"  {bench.name}: could not read its results: {exc}")
        data = read_result(path)
        if data is not None and path.stat().st_mtime < started:
            data, status = None, "stale" if code == 0 else status  # an old file is not this run's result
        failed += status != "ok"
        rows.append({"name": bench.name, "status": status, "secs": secs, "data": data})
    print("\n" + summary(rows))
    print(chart(rows, RESULTS / "summary.png"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
