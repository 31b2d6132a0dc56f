"""ATECC608 backend through Microchip's cryptoauthlib: the private key never leaves the chip.

This is the real code path for the Pi HAT, but it cannot run on a machine without the chip
and the library; tests cover only the clear error when they are absent.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from .base import Signer, SignerError

log = logging.getLogger("ohm.crypto")

KEY_SLOT = 0  # slot 0 holds the factory-generated P-256 private key on the standard configuration


def _lib() -> Any:
    try:
        import cryptoauthlib  # type: ignore[import-not-found]
    except ImportError:
        raise SignerError(
            "identity.backend is atecc608 but the cryptoauthlib package is not installed "
            "(pip install cryptoauthlib), or set identity.backend = software"
        ) from None
    return cryptoauthlib


class AteccSigner(Signer):
    """Signs with the P-256 key in an ATECC608 slot over I2C."""

    backend = "atecc608"

    def __init__(self, i2c_bus: int = 1, address: int = 0xC0, slot: int = KEY_SLOT) -> None:
        lib = _lib()
        self._lib = lib
        self.slot = slot
        cfg = lib.cfg_ateccx08a_i2c_default()
        cfg.cfg.atcai2c.bus = i2c_bus
        cfg.cfg.atcai2c.address = address
        status = lib.atcab_init(cfg)
        if status != lib.Status.ATCA_SUCCESS:
            raise SignerError(f"no ATECC608 answered on I2C bus {i2c_bus} address 0x{address:02x} (status {status})")
        raw = bytearray(64)
        status = lib.atcab_get_pubkey(slot, raw)
        if status != lib.Status.ATCA_SUCCESS:
            lib.atcab_release()
            raise SignerError(f"ATECC608 slot {slot} has no readable public key (status {status})")
        self._public = ec.EllipticCurvePublicNumbers(
            int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"), ec.SECP256R1()
        ).public_key()
        serial = bytearray(9)
        if lib.atcab_read_serial_number(serial) == lib.Status.ATCA_SUCCESS:
            log.info("ATECC608 serial %s, key slot %d", bytes(serial).hex(), slot)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half, read from the chip at start."""
        return self._public

    def _sign_es256(self, signing_input: bytes) -> bytes:
        digest = hashlib.sha256(signing_input).digest()
        sig = bytearray(64)
        status = self._lib.atcab_sign(self.slot, digest, sig)
        if status != self._lib.Status.ATCA_SUCCESS:
            raise SignerError(f"ATECC608 sign failed (status {status})")
        return bytes(sig)  # the chip already returns raw r||s

    def close(self) -> None:
        """Release the I2C device."""
        self._lib.atcab_release()


def available() -> bool:
    """True if cryptoauthlib can be imported (says nothing about a chip being there)."""
    try:
        _lib()
    except SignerError:
        return False
    return True
