"""Verifier for signed telemetry: signature, identity, chain, gaps and duplicates (pure, no I/O).

Batches may arrive in any order (live data overtakes backlog), so the ledger keeps the
sequence ranges it has seen per gateway, checks the hash link with whichever neighbour is
already known, and reports the gaps that remain.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from server.crypto.jws import JwsError, split, verify_signature
from server.crypto.keys import device_id_for, key_from_jwk

from .envelope import GENESIS, TYP_TELEMETRY, token_hash

NEW, DUPLICATE, REJECTED = "new", "duplicate", "rejected"


@dataclass
class Verdict:
    """What the ledger made of one token."""

    status: str  # new, duplicate or rejected
    gateway: str | None = None
    seq: tuple[int, int] | None = None
    problems: list[str] = field(default_factory=list)
    payload: dict[str, Any] | None = None
    hash: str | None = None

    @property
    def ok(self) -> bool:
        """True for a new batch with no problems."""
        return self.status == NEW and not self.problems


def authenticate(
    token: str, trusted: Mapping[str, ec.EllipticCurvePublicKey] | None = None, typ: str | None = TYP_TELEMETRY
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a token whose signature and identity hold; JwsError with the reason otherwise.

    A pinned key in `trusted` wins; without one the embedded JWK is used, and it must hash to
    the gateway id it claims (ids are key thumbprints, so nobody can sign as another id).
    """
    header, payload, signing_input, sig = split(token)
    if typ is not None and header.get("typ") != typ:
        raise JwsError(f"typ {header.get('typ')!r} is not {typ}")
    gw = payload.get("gw")
    if not isinstance(gw, str) or header.get("kid") != gw:
        raise JwsError("kid and gw disagree")
    key = (trusted or {}).get(gw)
    if key is None:
        if trusted is not None and len(trusted) and "*" not in trusted:
            raise JwsError(f"unknown gateway {gw}")
        try:
            key = key_from_jwk(header.get("jwk"))
        except ValueError as exc:
            raise JwsError(f"no usable key: {exc}") from None
        if device_id_for(key) != gw:
            raise JwsError("embedded key does not match the gateway id")
    if not verify_signature(signing_input, sig, key):
        raise JwsError("bad signature")
    return header, payload


def _shape(payload: dict[str, Any]) -> tuple[int, int]:
    seq = payload.get("seq")
    recs = payload.get("records")
    if (
        not isinstance(seq, list)
        or len(seq) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seq)
        or not 1 <= seq[0] <= seq[1]
    ):
        raise JwsError("bad sequence range")
    if not isinstance(recs, list) or [r.get("s") if isinstance(r, dict) else None for r in recs] != list(
        range(seq[0], seq[1] + 1)
    ):
        raise JwsError("records do not match the sequence range")
    if not isinstance(payload.get("prev"), str):
        raise JwsError("no prev hash")
    return seq[0], seq[1]


@dataclass
class _Batch:
    first: int
    last: int
    hash: str
    prev: str


class Ledger:
    """Per-gateway record of verified batches; feed tokens with `check`, read `gaps` and `summary`."""

    def __init__(self, trusted: Mapping[str, ec.EllipticCurvePublicKey] | None = None) -> None:
        self.trusted = trusted
        self._firsts: dict[str, list[int]] = {}
        self._batches: dict[str, dict[int, _Batch]] = {}
        self._by_last: dict[str, dict[int, _Batch]] = {}
        self.counts: dict[str, dict[str, int]] = {}

    def _count(self, gw: str | None, what: str, n: int = 1) -> None:
        c = self.counts.setdefault(gw or "?", {"batches": 0, "records": 0, "duplicates": 0, "rejected": 0, "chain": 0})
        c[what] = c.get(what, 0) + n

    def check(self, token: str) -> Verdict:
        """Verify one token and record it; never raises for bad input."""
        try:
            _header, payload = authenticate(token, self.trusted)
            first, last = _shape(payload)
        except JwsError as exc:
            self._count(None, "rejected")
            return Verdict(REJECTED, problems=[str(exc)])
        gw = payload["gw"]
        h = token_hash(token)
        batches = self._batches.setdefault(gw, {})
        firsts = self._firsts.setdefault(gw, [])
        by_last = self._by_last.setdefault(gw, {})
        known = batches.get(first)
        if known is not None and known.hash == h:
            self._count(gw, "duplicates")
            return Verdict(DUPLICATE, gw, (first, last), payload=payload, hash=h)
        i = bisect.bisect_left(firsts, first)
        clash = [
            b
            for b in (batches.get(f) for f in firsts[max(0, i - 1) : i + 1])
            if b and b.first <= last and first <= b.last
        ]
        if clash:
            self._count(gw, "rejected")
            b = clash[0]
            return Verdict(
                REJECTED, gw, (first, last), [f"overlaps batch {b.first}-{b.last} with other content"], payload, h
            )
        problems = []
        before = by_last.get(first - 1)
        if before is not None and before.hash != payload["prev"]:
            problems.append(f"chain broken: prev does not match batch {before.first}-{before.last}")
        if first == 1 and payload["prev"] != GENESIS:
            problems.append("first batch does not start the chain")
        after = batches.get(last + 1)
        if after is not None and after.prev != h:
            problems.append(f"chain broken: batch {after.first}-{after.last} does not follow this one")
        batch = _Batch(first, last, h, payload["prev"])
        batches[first] = batch
        by_last[last] = batch
        firsts.insert(i, first)
        self._count(gw, "batches")
        self._count(gw, "records", last - first + 1)
        if problems:
            self._count(gw, "chain")
        return Verdict(NEW, gw, (first, last), problems, payload, h)

    def gaps(self, gw: str) -> list[tuple[int, int]]:
        """Missing sequence ranges between 1 and the highest sequence seen."""
        out, expect = [], 1
        for f in self._firsts.get(gw, []):
            b = self._batches[gw][f]
            if b.first > expect:
                out.append((expect, b.first - 1))
            expect = max(expect, b.last + 1)
        return out

    def gateways(self) -> list[str]:
        """Gateways seen so far."""
        return sorted(self._batches)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Counts and gaps per gateway."""
        out: dict[str, dict[str, Any]] = {}
        for gw, c in self.counts.items():
            out[gw] = {**c, "gaps": self.gaps(gw) if gw != "?" else []}
        return out
