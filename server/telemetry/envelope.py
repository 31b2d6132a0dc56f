"""Pure envelope builders: telemetry batches, events and command results, signed as compact JWS.

A batch payload carries the gateway id, the sequence range of its records, their time span,
whether the clock was synced, and the SHA-256 of the previous batch's token, so a backend can
check origin, order, gaps and replays. These builders are the only callers of the signer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.bus import DeviceEvent, Quality, Snapshot
from server.crypto.base import Signer
from server.crypto.jws import sign_compact

VERSION = 1
TYP_TELEMETRY = "ohm.telemetry"
TYP_EVENT = "ohm.event"
TYP_RESULT = "ohm.cmd.result"
GENESIS = "0" * 64  # prev hash of a gateway's very first batch


@dataclass(frozen=True)
class ChainState:
    """Where the chain stands: the next sequence number and the hash of the last batch."""

    next_seq: int = 1
    prev_hash: str = GENESIS


def record_from_snapshot(snap: Snapshot) -> dict[str, Any]:
    """A compact record (no sequence yet): device, time, online, values, units, non-OK qualities."""
    rec: dict[str, Any] = {"d": snap.device_id, "t": round(snap.ts, 3), "on": snap.online}
    if snap.points:
        rec["v"] = {k: p.value for k, p in snap.points.items()}
        rec["u"] = {k: p.unit for k, p in snap.points.items()}
        bad = {k: p.quality.value for k, p in snap.points.items() if p.quality is not Quality.OK}
        if bad:
            rec["q"] = bad
    if snap.profile:
        rec["p"] = snap.profile
    if snap.error:
        rec["e"] = snap.error[:200]
    return rec


def token_hash(token: str) -> str:
    """SHA-256 hex of a token: what the next batch names as `prev`."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def header_for(signer: Signer, typ: str) -> dict[str, Any]:
    """JWS header: kid is the gateway id; the public JWK makes every token self-verifying."""
    jwk = {k: v for k, v in signer.public_jwk().items() if k != "kid"}
    return {"kid": signer.device_id, "typ": typ, "jwk": jwk}


def build_batch(
    signer: Signer, state: ChainState, records: Sequence[Mapping[str, Any]], *, now: float, synced: bool
) -> tuple[str, ChainState, dict[str, Any]]:
    """Number the records from state.next_seq, sign the batch; returns (token, next state, payload)."""
    if not records:
        raise ValueError("a batch needs at least one record")
    first = state.next_seq
    numbered = [{**rec, "s": first + i} for i, rec in enumerate(records)]
    last = first + len(numbered) - 1
    times = [float(r["t"]) for r in numbered]
    payload = {
        "v": VERSION,
        "gw": signer.device_id,
        "seq": [first, last],
        "ts": [min(times), max(times)],
        "sent": round(now, 3),
        "synced": synced,
        "prev": state.prev_hash,
        "records": numbered,
    }
    token = sign_compact(signer, header_for(signer, TYP_TELEMETRY), payload)
    return token, ChainState(last + 1, token_hash(token)), payload


def build_event(signer: Signer, event: DeviceEvent, *, synced: bool) -> str:
    """A signed device/gateway event for the /events topic."""
    payload = {
        "v": VERSION,
        "gw": signer.device_id,
        "kind": event.kind,
        "ts": round(event.ts, 3),
        "synced": synced,
        "device": event.device_id,
        "detail": _jsonable(dict(event.detail)),
    }
    return sign_compact(signer, header_for(signer, TYP_EVENT), payload)


def build_result(
    signer: Signer, cmd_id: str | None, *, ok: bool, now: float, result: Any = None, reason: str | None = None
) -> str:
    """A signed command result; the structure is fixed, so it can never pass as telemetry."""
    payload: dict[str, Any] = {"v": VERSION, "gw": signer.device_id, "id": cmd_id, "ok": ok, "ts": round(now, 3)}
    if ok:
        payload["result"] = _jsonable(result)
    else:
        payload["reason"] = reason or "rejected"
    return sign_compact(signer, header_for(signer, TYP_RESULT), payload)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
