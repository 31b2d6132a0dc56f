"""Public key encodings (PEM, JWK), the RFC 7638 thumbprint and the device id derived from it."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ID_PREFIX = "ohm-"
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of b64url; raises ValueError on bad input."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("not base64url") from exc


def public_pem(key: ec.EllipticCurvePublicKey) -> str:
    """SubjectPublicKeyInfo PEM text."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The P-256 public key as a JWK (kty, crv, x, y)."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("only P-256 keys are supported")
    nums = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(nums.x.to_bytes(32, "big")),
        "y": b64url(nums.y.to_bytes(32, "big")),
    }


def key_from_jwk(jwk: Any) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from a JWK dict; ValueError if it is not one."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError("not a P-256 EC JWK")
    x, y = b64url_decode(jwk.get("x", "")), b64url_decode(jwk.get("y", ""))
    if len(x) != 32 or len(y) != 32:
        raise ValueError("bad JWK coordinates")
    return ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
    ).public_key()


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from PEM text or JWK JSON text; ValueError with a reason otherwise."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return key_from_jwk(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JWK JSON: {exc}") from None
    try:
        key = serialization.load_pem_public_key(text.encode())
    except ValueError:
        raise ValueError("not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not a P-256 public key")
    return key


def jwk_thumbprint(key: ec.EllipticCurvePublicKey) -> bytes:
    """RFC 7638 SHA-256 thumbprint of the public key."""
    jwk = public_jwk(key)
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).digest()


def device_id_for(key: ec.EllipticCurvePublicKey) -> str:
    """`ohm-` + 20 base32 characters (100 bits) of the key thumbprint: topic-safe and self-certifying."""
    return ID_PREFIX + base64.b32encode(jwk_thumbprint(key)).decode("ascii").lower()[:20]
