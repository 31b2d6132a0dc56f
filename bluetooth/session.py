"""The Ohm channel's session: ECDH P-256 + HKDF-SHA256 keyed with the PoP, AES-256-GCM with counters.

Both ends live here: `GatewaySession` (the service) and `CentralSession` (tests, bench, tools).
The cryptography library does all the cryptography; this module only fixes the layout.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 1
INFO_PREFIX = b"ohm-ble-v1|"
TO_GATEWAY, TO_CENTRAL = 0x00, 0x01
SALT_BYTES = 16
MAX_COUNTER = (1 << 88) - 1


class SessionError(ValueError):
    """A box that does not open, a replayed counter, or a malformed handshake value."""


def b64e(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: Any) -> bytes:
    """Decode base64url with or without padding; raises SessionError."""
    if not isinstance(text, str) or len(text) > 200_000:
        raise SessionError("expected a base64url string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise SessionError("not base64url") from exc


def public_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The uncompressed 65-byte point of a private key's public half."""
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def load_point(raw: bytes) -> ec.EllipticCurvePublicKey:
    """An uncompressed P-256 point (65 bytes, on the curve); raises SessionError."""
    if len(raw) != 65 or raw[0] != 0x04:
        raise SessionError("pub must be an uncompressed P-256 point (65 bytes)")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as exc:
        raise SessionError("pub is not a point on P-256") from exc


def derive_key(private: ec.EllipticCurvePrivateKey, peer: ec.EllipticCurvePublicKey, salt: bytes, pop: str) -> bytes:
    """key = HKDF-SHA256(ikm=ECDH shared secret, salt, info='ohm-ble-v1|' + pop, 32 bytes)."""
    shared = private.exchange(ec.ECDH(), peer)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=INFO_PREFIX + pop.encode()).derive(shared)


class Box:
    """AES-256-GCM in one direction pair: seals with our counter, opens only increasing peer counters."""

    def __init__(self, key: bytes, send_dir: int, recv_dir: int) -> None:
        self._aead = AESGCM(key)
        self._send_dir, self._recv_dir = send_dir, recv_dir
        self._send = 0
        self._last_recv = -1

    def seal(self, req: int, obj: Any) -> dict[str, str]:
        """`{"box": b64url(nonce || ciphertext+tag)}` of a JSON object, AAD = the req byte."""
        if self._send > MAX_COUNTER:
            raise SessionError("counter exhausted; start a new session")
        nonce = bytes([self._send_dir]) + self._send.to_bytes(11, "big")
        self._send += 1
        data = json.dumps(obj, separators=(",", ":")).encode()
        return {"box": b64e(nonce + self._aead.encrypt(nonce, data, bytes([req & 0xFF])))}

    def open(self, req: int, box: Any) -> Any:
        """The JSON object inside a box; raises SessionError for a bad tag, direction or old counter."""
        raw = b64d(box)
        if len(raw) < 12 + 16:
            raise SessionError("box too short")
        nonce, sealed = raw[:12], raw[12:]
        if nonce[0] != self._recv_dir:
            raise SessionError("box has the wrong direction")
        counter = int.from_bytes(nonce[1:], "big")
        if counter <= self._last_recv:
            raise SessionError("counter not greater than the last (replay or reorder)")
        try:
            plain = self._aead.decrypt(nonce, sealed, bytes([req & 0xFF]))
        except InvalidTag as exc:
            raise SessionError("box does not open") from exc
        self._last_recv = counter  # only an authentic box moves the counter
        try:
            return json.loads(plain)
        except ValueError as exc:
            raise SessionError("box holds no JSON") from exc


class GatewaySession:
    """The gateway half: answer a hello, check the confirm, then seal and open requests."""

    def __init__(self, central_pub: Any, pop: str) -> None:
        peer = load_point(b64d(central_pub))
        self._private = ec.generate_private_key(ec.SECP256R1())
        self.salt = os.urandom(SALT_BYTES)
        self.box = Box(derive_key(self._private, peer, self.salt, pop), TO_CENTRAL, TO_GATEWAY)
        self.ready = False

    def hello_reply(self) -> dict[str, Any]:
        """The gateway's hello: its ephemeral point and the salt."""
        return {"op": "hello", "v": VERSION, "pub": b64e(public_bytes(self._private)), "salt": b64e(self.salt)}

    def confirm(self, req: int, message: dict[str, Any]) -> dict[str, str]:
        """Open the central's confirm; returns the sealed ready. Raises SessionError on a wrong PoP."""
        inner = self.box.open(req, message.get("box"))
        if not isinstance(inner, dict) or inner.get("op") != "confirm":
            raise SessionError("confirm box holds something else")
        self.ready = True
        return self.box.seal(req, {"op": "ready"})


class CentralSession:
    """The central half (phone page logic in Python): hello, confirm, then seal requests and open replies."""

    def __init__(self) -> None:
        self._private = ec.generate_private_key(ec.SECP256R1())
        self.box: Box | None = None

    def hello(self) -> dict[str, Any]:
        """The central's hello."""
        return {"op": "hello", "v": VERSION, "pub": b64e(public_bytes(self._private))}

    def confirm(self, req: int, reply: dict[str, Any], pop: str) -> dict[str, Any]:
        """Derive the key from the gateway's hello and the PoP; returns the confirm message."""
        if reply.get("op") != "hello":
            raise SessionError(f"gateway refused the hello: {reply}")
        peer = load_point(b64d(reply.get("pub")))
        self.box = Box(derive_key(self._private, peer, b64d(reply.get("salt")), pop), TO_GATEWAY, TO_CENTRAL)
        return {"op": "confirm", **self.box.seal(req, {"op": "confirm"})}
