"""Chooses the key backend in one place (like bleak picks its backend)."""

from __future__ import annotations

import logging
from pathlib import Path

from .base import Signer, SignerError
from .software import KEY_FILE, SoftwareSigner

log = logging.getLogger("ohm.crypto")

BACKENDS = ("auto", "software", "atecc608")


def open_signer(backend: str, data_dir: Path, *, i2c_bus: int = 1, i2c_address: int = 0xC0) -> Signer:
    """The configured signer. `auto` keeps an existing software key, else tries the chip, else makes a key."""
    if backend not in BACKENDS:
        raise SignerError(f"unknown identity backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "software" or (backend == "auto" and (Path(data_dir) / KEY_FILE).exists()):
        return SoftwareSigner.load_or_create(data_dir)
    from . import atecc

    if backend == "atecc608":
        return atecc.AteccSigner(i2c_bus, i2c_address)
    if atecc.available():
        try:
            return atecc.AteccSigner(i2c_bus, i2c_address)
        except SignerError as exc:
            log.info("no secure element (%s); using a software key", exc)
    return SoftwareSigner.load_or_create(data_dir)
