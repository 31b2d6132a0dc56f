"""Who may set a point: one owner at a time, local > backend > schedule (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

# Higher wins. Home Assistant counts as local: it is the owner's own automation on the LAN.
PRIORITY: dict[str, int] = {"local": 3, "backend": 2, "schedule": 1}


@dataclass(frozen=True)
class Hold:
    """The current owner of a point."""

    action_id: str
    who: str
    source: str
    until: float | None  # wall time the hold ends (revert or lease), None while it is being applied

    def as_dict(self) -> dict[str, object]:
        """JSON form for `held_by`."""
        return {"who": self.who, "priority": self.source, "until": self.until, "action": self.action_id}


@dataclass(frozen=True)
class Decision:
    """What happens to a newcomer: "free", "replace" (same owner), "preempt" (outranks) or "conflict"."""

    outcome: str
    detail: str = ""

    @property
    def allowed(self) -> bool:
        """Whether the newcomer may go ahead."""
        return self.outcome != "conflict"


def describe(hold: Hold) -> str:
    """'held by admin@1.2.3.4 (local) until 12:30:00 UTC' for a 409."""
    until = ""
    if hold.until is not None:
        until = " until " + datetime.fromtimestamp(hold.until, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"held by {hold.who} ({hold.source} priority, action {hold.action_id}){until}"


def arbitrate(holder: Hold | None, who: str, source: str) -> Decision:
    """Decide whether `who` with priority `source` may take a point `holder` holds."""
    if holder is None:
        return Decision("free")
    if holder.who == who:
        return Decision("replace", f"replaces {holder.action_id}")
    if PRIORITY[source] > PRIORITY[holder.source]:
        return Decision("preempt", f"preempts {holder.action_id} of {holder.who}")
    return Decision("conflict", describe(holder))
