"""Reconnect backoff: exponential, jittered ("equal jitter"), capped (pure)."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 10.0, rng: random.Random | None = None) -> float:
    """Seconds before attempt `attempt` (1, 2, ...): random in [c/2, c] with c = min(cap, base * 2^(n-1))."""
    ceiling = min(cap, base * 2 ** min(max(attempt, 1) - 1, 30))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
