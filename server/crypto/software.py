"""Software backend: a P-256 key made on first boot, kept as PEM in the data directory (mode 0600)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

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
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("%s is readable by others (mode %o); fixing to 0600", path, mode)
            path.chmod(0o600)
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
    """Write a new key to a temp file (0600 from the start), fsync, then link it in place.

    os.link fails if another process won the race, so two first boots never end with two keys.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process created it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    log.info("created a new gateway identity key in %s", path)
