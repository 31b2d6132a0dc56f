"""The proof-of-possession code printed on the label: 10 Crockford base32 characters, made on first boot (0600)."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from server.secretfile import create_once, owner_only

POP_FILE = "ble_pop"
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
LENGTH = 10  # 50 bits
log = logging.getLogger("ohm.ble")


def normalize(text: str) -> str:
    """What a user typed, as the code: upper case, no spaces or dashes, O->0, I/L->1."""
    out = text.strip().upper().replace("-", "").replace(" ", "")
    return out.translate(str.maketrans({"O": "0", "I": "1", "L": "1"}))


def is_valid(code: str) -> bool:
    """True for 10 characters of the Crockford alphabet."""
    return len(code) == LENGTH and all(c in ALPHABET for c in code)


def generate() -> str:
    """A fresh random code."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def label(code: str) -> str:
    """The code as printed: two groups of five (`ABCDE-FGHJK`)."""
    return f"{code[:5]}-{code[5:]}"


def load_or_create(data_dir: Path) -> tuple[str, bool]:
    """Read the code, or make it atomically with mode 0600 on first boot; returns (code, created)."""
    path = Path(data_dir) / POP_FILE
    try:
        return _read(path), False
    except FileNotFoundError:
        pass
    code = generate()
    if not create_once(path, (code + "\n").encode("ascii")):
        return _read(path), False  # another process made it first: theirs wins
    return code, True


def _read(path: Path) -> str:
    owner_only(path)
    code = normalize(path.read_text(encoding="ascii", errors="replace"))
    if not is_valid(code):
        raise ValueError(f"{path}: damaged PoP file; restore it from the label (or delete it to make a new code)")
    return code
