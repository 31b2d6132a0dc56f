"""Reference consumer: subscribes for a fleet, verifies, de-duplicates and stores telemetry in SQLite."""

from .consumer import Consumer, ConsumerStore

__all__ = ["Consumer", "ConsumerStore"]
