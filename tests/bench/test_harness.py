"""The benchmark harness's pure parts: the common result shape, the BLE output adapter, the summary table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import run
from bench.common import read_result, write_result

BLE_OUTPUT = """BLE benchmark: bumble backend on a virtual link, server on 127.0.0.1:40000
MTU 517 GET /api/hello          reply    112 B on the wire: ohm p50    9.10 ms  p99   12.00 ms | bare GATT p50    3.00 ms  p99    4.00 ms | ratio  3.0x
MTU 185 GET /api/openapi.json   reply  20480 B on the wire: ohm p50   80.00 ms  p99   90.00 ms | bare GATT p50   40.00 ms  p99   45.00 ms | ratio  2.0x
full provisioning (scan to Wi-Fi answer): 812.5 ms (scan 100.0, connect 20.0 ms); Wi-Fi: True
"""  # noqa: E501 - the lines exactly as bench/ble.py prints them


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OHM_BENCH_RESULTS", str(tmp_path))
    return tmp_path


def test_a_result_has_the_common_shape_and_json_safe_numbers(results: Path) -> None:
    path = write_result("x", {"a": 1.23456789, "nan": float("nan")}, {"b": 2}, {"r": 3.0}, {"fast": True})
    data = json.loads(path.read_text())
    assert set(data) == {"name", "figures", "baseline", "ratio", "targets", "machine", "when"}
    assert data["figures"] == {"a": 1.23457, "nan": None}
    assert data["targets"] == {"fast": True} and data["machine"]["cores"] >= 1
    assert read_result(path) == data
    (results / "raw.json").write_text('{"throughput": {}}')  # engine.py's own shape is not mistaken for it
    assert read_result(results / "raw.json") is None
    assert read_result(results / "missing.json") is None


def test_ble_output_becomes_a_result(results: Path) -> None:
    run.adapt_ble(BLE_OUTPUT)
    data = read_result(results / "ble.json")
    assert data is not None
    assert data["figures"]["mtu517_hello_p50_ms"] == 9.1
    assert data["figures"]["mtu185_openapi_json_reply_bytes"] == 20480
    assert data["baseline"]["mtu185_openapi_json_p99_ms"] == 45.0
    assert data["ratio"] == {"mtu517_hello_time": 3.0, "mtu185_openapi_json_time": 2.0}
    assert data["figures"]["provisioning_ms"] == 812.5


def test_ble_output_without_figures_is_an_error_not_an_empty_result(results: Path) -> None:
    with pytest.raises(ValueError, match="no figures"):
        run.adapt_ble("Traceback (most recent call last): ...")
    assert not (results / "ble.json").exists()


def test_engine_json_is_converted(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = {
        "throughput": {"bare_heapq": 400_000.0, "sched": 16_000.0, "engine": 140_000.0, "ratio_vs_heapq": 2.9},
        "steady": {"bare_heapq": 900_000.0, "engine": 150_000.0, "ratio_vs_heapq": 6.0, "in_flight": 100},
        "lateness": {"engine": {"p50_ms": 0.1, "p99_ms": 0.3, "n": 5000}, "sched": {"p50_ms": 0.1, "p99_ms": 0.2}},
        "idle": {"cpu_s": 0.0, "cpu_pct": 0.003, "tasks_run": 0},
        "targets": {"throughput >= 100k tasks/s": True},
    }
    (results / "engine.raw.json").write_text(json.dumps(raw))
    monkeypatch.setattr(run, "RESULTS", results)
    run.adapt_engine("")
    data = read_result(results / "engine.json")
    assert data is not None
    assert data["ratio"]["time_per_task_vs_heapq_deep"] == 2.9
    assert data["ratio"]["p99_lateness_vs_sched"] == pytest.approx(1.5)
    assert data["targets"] == {"throughput >= 100k tasks/s": True}


def test_summary_names_missed_targets_and_footprint(results: Path) -> None:
    fp = read_result(
        write_result("footprint", {"rss_mb_10": 61.0, "startup_api_s_median_of_3": 0.8}, {}, {}, {"RSS < 60 MB": False})
    )
    rows = [
        {"name": "footprint", "status": "ok", "secs": 12.0, "data": fp},
        {"name": "ble", "status": "rc 1", "secs": 3.0},
    ]
    table = run.summary(rows)
    assert "missed: RSS < 60 MB" in table
    assert "rss_mb_10 61" in table
    assert "rc 1" in table


def test_engine_json_written_by_engine_py_alone_is_adopted(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = {
        "throughput": {"bare_heapq": 4.0, "sched": 1.0, "engine": 2.0, "ratio_vs_heapq": 2.0},
        "steady": {"bare_heapq": 4.0, "engine": 1.0, "ratio_vs_heapq": 4.0},
        "lateness": {"engine": {"p50_ms": 0.1, "p99_ms": 0.2}, "sched": {"p50_ms": 0.1, "p99_ms": 0.2}},
        "idle": {"cpu_pct": 0.0},
        "targets": {},
    }
    (results / "engine.json").write_text(json.dumps(raw))
    monkeypatch.setattr(run, "RESULTS", results)
    run.adopt_engine_json()
    data = read_result(results / "engine.json")
    assert data is not None and data["ratio"]["time_per_task_vs_heapq_steady"] == 4.0
    assert json.loads((results / "engine.raw.json").read_text()) == raw
