"""The Signer contract every key backend implements (like bleak's backend base classes)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from cryptography.hazmat.primitives.asymmetric import ec

from .keys import device_id_for, public_jwk, public_pem


class SignerError(RuntimeError):
    """The key backend cannot be used; the message says why and what to do."""


class Signer(ABC):
    """A P-256 key that produces raw r||s ES256 signatures; the private key never leaves it."""

    backend: str = "abstract"

    @abstractmethod
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half of the key."""

    @abstractmethod
    def _sign_es256(self, signing_input: bytes) -> bytes:
        """Sign a JWS signing input (SHA-256 then ECDSA), returning 64 bytes r||s.

        Private on purpose: only server.crypto.jws.sign_compact calls it, and only the
        envelope builders call that, with structures they built themselves.
        """

    @property
    def device_id(self) -> str:
        """The gateway id, derived from the public key."""
        return device_id_for(self.public_key())

    def public_pem(self) -> str:
        """The public key as PEM (SubjectPublicKeyInfo)."""
        return public_pem(self.public_key())

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (RFC 7517) with its kid."""
        return {**public_jwk(self.public_key()), "kid": self.device_id}

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release the backend (a no-op for software keys)."""
