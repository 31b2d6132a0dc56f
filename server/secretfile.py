"""Files that hold secrets (keys, tokens, the PoP code): created once, owner-only from the first byte."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger("ohm.secrets")


def create_once(path: Path, data: bytes) -> bool:
    """Put `data` at `path` unless it exists: a 0600 temp file, fsynced, then linked in place.

    Returns False when another process made the file first (theirs wins), so two first boots racing
    never end with two different secrets.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if the file exists: never overwrites a secret
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the new name survives a power cut
    finally:
        os.close(dir_fd)
    return True


def owner_only(path: Path) -> None:
    """Set a secret file back to mode 0600 if someone widened it (a restore, a copy), and say so."""
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o); set back to 0600", path, mode)
        os.chmod(path, 0o600)
