"""The one shape every benchmark result takes, and the writer/reader of `bench/results/<name>.json`.

    {"name": ..., "figures": {...}, "baseline": {...}, "ratio": {...}, "targets": {"what": true|false},
     "machine": {...}, "when": "2026-11-23T18:50:00Z"}

`figures` are the gateway's own numbers, `baseline` the same-run numbers of the bare thing it is compared
with (bare heapq loop, bare pymodbus client, bare paho publisher, bare Flask, bare GATT), `ratio` the
comparisons (documented per key: a ratio name says which way it reads). Flat dicts of numbers only, so the
harness can tabulate and chart any of them without knowing the benchmark.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the figures were measured on, including how loaded it was (other jobs share these cores)."""
    try:
        load1, load5, _ = os.getloadavg()
    except OSError:  # not on every platform
        load1 = load5 = float("nan")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "loadavg_1m": round(load1, 2),
        "loadavg_5m": round(load5, 2),
    }


def _clean(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Numbers rounded for reading; NaN/inf become None (JSON has neither)."""
    out: dict[str, Any] = {}
    for key, value in (values or {}).items():
        if isinstance(value, bool):
            out[key] = value
        elif isinstance(value, float):
            out[key] = None if not math.isfinite(value) else float(f"{value:.6g}")
        else:
            out[key] = value
    return out


def result(
    name: str,
    figures: Mapping[str, Any],
    baseline: Mapping[str, Any] | None = None,
    ratio: Mapping[str, Any] | None = None,
    targets: Mapping[str, bool] | None = None,
    notes: str = "",
    when: float | None = None,
) -> dict[str, Any]:
    """A result in the common shape (see the module docstring); `when` defaults to now."""
    data = {
        "name": name,
        "figures": _clean(figures),
        "baseline": _clean(baseline),
        "ratio": _clean(ratio),
        "targets": {k: bool(v) for k, v in (targets or {}).items()},
        "machine": machine(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
    }
    if notes:
        data["notes"] = notes
    return data


def write_result(
    name: str,
    figures: Mapping[str, Any],
    baseline: Mapping[str, Any] | None = None,
    ratio: Mapping[str, Any] | None = None,
    targets: Mapping[str, bool] | None = None,
    notes: str = "",
    directory: Path | None = None,
    when: float | None = None,
) -> Path:
    """Write `<directory>/<name>.json` (default bench/results) atomically; returns its path."""
    directory = directory or Path(os.environ.get("OHM_BENCH_RESULTS", RESULTS))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result(name, figures, baseline, ratio, targets, notes, when), indent=2) + "\n")
    tmp.replace(path)  # a reader never sees half a file
    print(f"results: {path}", file=sys.stderr)
    return path


def read_result(path: Path) -> dict[str, Any] | None:
    """A result file in the common shape, or None when it is missing, unreadable or of another shape."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("figures"), dict):
        return None
    return data


def end_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Terminate `proc`; kill it if it has not exited within `timeout` s (a stuck child never outlives a bench)."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
