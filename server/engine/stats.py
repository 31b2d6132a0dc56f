"""Counters the engine keeps while it runs; cheap to update, summarised on demand."""

from __future__ import annotations

from array import array
from dataclasses import dataclass


@dataclass(slots=True)
class KindStats:
    """Run-time figures for one kind of task."""

    runs: int = 0
    total: float = 0.0
    max: float = 0.0
    failures: int = 0
    overruns: int = 0

    def as_dict(self) -> dict[str, float | int]:
        """JSON-friendly summary, times in milliseconds."""
        mean = self.total / self.runs if self.runs else 0.0
        return {
            "runs": self.runs,
            "mean_ms": round(mean * 1000, 4),
            "max_ms": round(self.max * 1000, 4),
            "total_ms": round(self.total * 1000, 3),
            "failures": self.failures,
            "overruns": self.overruns,
        }


class LatenessWindow:
    """The last `size` lateness samples (seconds a task started after it was due), in a ring."""

    __slots__ = ("count", "mask", "samples", "size")

    def __init__(self, size: int = 4096) -> None:
        if size < 1 or size & (size - 1):
            raise ValueError("window size must be a power of two")
        self.size = size
        self.mask = size - 1  # public: the engine's loop writes samples itself, without a call
        self.samples = array("d", bytes(8 * size))  # preallocated: no growth on the hot path
        self.count = 0

    def add(self, value: float) -> None:
        """Record one sample, overwriting the oldest once full."""
        self.samples[self.count & self.mask] = value
        self.count += 1

    def values(self) -> list[float]:
        """The samples held now."""
        return list(self.samples[: min(self.count, self.size)])

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100) of the window, 0 when empty."""
        ordered = sorted(self.values())
        if not ordered:
            return 0.0
        k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
        return ordered[k]
