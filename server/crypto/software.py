"""Software backend: a P-256 key made on first boot, kept as PEM in the data directory (mode 0600)."""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from server.secretfile import create_once, owner_only

from .base import Signer, SignerError

log = logging.getLogger("ohm.crypto")

KEY_FILE = "identity.key.pem"


class SoftwareSigner(Signer):
    """A P-256 private key in a file only the gateway user can read."""

    backend = "software"

    def __init__(self, key: ec.EllipticCurvePrivateKey, path: Path | None = None) -> None:
        self._key = key
        self._public = key.public_key()
        self.path = path

    @classmethod
    def generate(cls) -> SoftwareSigner:
        """A fresh in-memory key (tests, benchmarks)."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load_or_create(cls, data_dir: Path) -> SoftwareSigner:
        """Load the key from `data_dir`, creating it atomically on first boot."""
        path = Path(data_dir) / KEY_FILE
        if not path.exists():
            _create(path)
        owner_only(path)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise SignerError(
                f"{path} is not a usable private key ({exc}); move it away to make a new identity"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise SignerError(f"{path} is not a P-256 key")
        return cls(key, path)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half."""
        return self._public

    def _sign_es256(self, signing_input: bytes) -> bytes:
        der = self._key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _create(path: Path) -> None:
    """A new key, 0600 from the start; if another process won the race, its key is the one kept."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    if create_once(path, pem):
        log.info("created a new gateway identity key in %s", path)
