"""Durable outbox: SQLite (WAL) queue of signed messages, deleted only after the broker's PUBACK."""

from .store import PRIO_LIVE, PRIO_RESULT, OutboxStore, Row

__all__ = ["PRIO_LIVE", "PRIO_RESULT", "OutboxStore", "Row"]
