"""Prometheus text exposition of the gateway's counters (format 0.0.4)."""

from __future__ import annotations

from typing import Any


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(gateway: Any, rss: int) -> str:
    """Polls, failures, lateness, outbox depth, uplink state and RSS as Prometheus text."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

    stats = gateway.engine.stats()
    late = stats["lateness_ms"]
    metric("ohm_engine_up", "gauge", "1 while the engine runs", [("", 1.0 if stats["state"] == "running" else 0.0)])
    metric("ohm_engine_tasks_total", "counter", "tasks run", [("", stats["tasks_run"])])
    metric("ohm_engine_failures_total", "counter", "task failures", [("", stats["failures"])])
    metric("ohm_engine_queue_depth", "gauge", "tasks waiting", [("", stats["queue_depth"])])
    metric(
        "ohm_engine_lateness_seconds",
        "gauge",
        "task start lateness",
        [('{quantile="0.5"}', late["p50"] / 1000), ('{quantile="0.99"}', late["p99"] / 1000)],
    )
    services = getattr(gateway, "services", None) or {}
    devices = services.get("devices")
    health = devices.health() if devices is not None else {}
    polls, fails, online = [], [], []
    for dev, h in sorted(health.items()):
        lab = f'{{device="{_label(dev)}"}}'
        polls.append((lab, h.get("polls", 0)))
        fails.append((lab, h.get("failures", 0)))
        online.append((lab, 1.0 if h.get("online") else 0.0))
    metric("ohm_device_polls_total", "counter", "polls per device", polls)
    metric("ohm_device_failures_total", "counter", "failed polls per device", fails)
    metric("ohm_device_online", "gauge", "1 if the device answered its last poll", online)
    outbox = services.get("outbox")
    if outbox is not None:
        o = outbox.stats()
        metric("ohm_outbox_depth", "gauge", "messages waiting in the outbox", [("", o["rows"])])
        metric("ohm_outbox_bytes", "gauge", "bytes in the outbox", [("", o["bytes"])])
        metric("ohm_outbox_dropped_total", "counter", "messages dropped by the size/age bound", [("", o["dropped"])])
    uplink = services.get("uplink")
    if uplink is not None:
        u = uplink.stats()
        metric(
            "ohm_uplink_connected", "gauge", "1 while connected to the broker", [("", 1.0 if u["connected"] else 0.0)]
        )
        metric("ohm_uplink_inflight", "gauge", "messages awaiting PUBACK", [("", u["inflight"])])
    metric("process_resident_memory_bytes", "gauge", "resident set size", [("", float(rss))])
    return "\n".join(lines) + "\n"
