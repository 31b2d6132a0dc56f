"""ES256 compact JWS (RFC 7515) over JSON payloads, with `cryptography` for ECDSA."""

from __future__ import annotations

import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .base import Signer
from .keys import b64url, b64url_decode

MAX_TOKEN = 4 * 1024 * 1024


class JwsError(ValueError):
    """A token is malformed or its signature does not verify."""


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def sign_compact(signer: Signer, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """Compact JWS of a JSON payload; for the envelope builders only (no signing oracle)."""
    head = {**header, "alg": "ES256"}
    signing_input = b64url(_json(head)).encode() + b"." + b64url(_json(payload)).encode()
    sig = signer._sign_es256(signing_input)
    return signing_input.decode() + "." + b64url(sig)


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, payload, signing input, raw signature) without checking the signature."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN:
        raise JwsError("not a token (or too large)")
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JwsError("not a compact JWS (expected three dot-separated parts)")
    try:
        header = json.loads(b64url_decode(parts[0]))
        payload = json.loads(b64url_decode(parts[1]))
        sig = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise JwsError(f"not a compact JWS: {exc}") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise JwsError("JWS header and payload must be JSON objects")
    if header.get("alg") != "ES256":
        raise JwsError(f"unsupported alg {header.get('alg')!r} (only ES256)")
    return header, payload, (parts[0] + "." + parts[1]).encode(), sig


def verify_signature(signing_input: bytes, sig: bytes, key: ec.EllipticCurvePublicKey) -> bool:
    """True if `sig` (raw r||s) is a valid ES256 signature of `signing_input` by `key`."""
    if len(sig) != 64:
        return False
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def verify_compact(token: str, key: ec.EllipticCurvePublicKey) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a token signed by `key`; JwsError otherwise."""
    header, payload, signing_input, sig = split(token)
    if not verify_signature(signing_input, sig, key):
        raise JwsError("bad signature")
    return header, payload
