"""API tokens: an admin and a read token generated at first boot, kept in data_dir/api_tokens.json (mode 0600)."""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

TOKENS_FILE = "api_tokens.json"
log = logging.getLogger("ohm.api")


@dataclass(frozen=True)
class Tokens:
    """The two bearer tokens; `role_of` compares in constant time."""

    admin: str
    read: str

    def role_of(self, presented: str) -> str | None:
        """'admin', 'read' or None for a presented token (both compared, so timing tells nothing)."""
        given = presented.encode()
        is_admin = hmac.compare_digest(given, self.admin.encode())
        is_read = hmac.compare_digest(given, self.read.encode())
        return "admin" if is_admin else "read" if is_read else None

    def __repr__(self) -> str:  # never show a token in a log line or traceback
        return "Tokens(admin=***, read=***)"


def load_or_create(data_dir: Path) -> tuple[Tokens, bool]:
    """Read the tokens, or create them (atomically, 0600) on first boot; returns (tokens, created)."""
    path = Path(data_dir) / TOKENS_FILE
    try:
        return _read(path), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tokens = Tokens(admin=secrets.token_urlsafe(32), read=secrets.token_urlsafe(32))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"admin": tokens.admin, "read": tokens.read}, f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if another process created it first: then theirs wins
        except FileExistsError:
            return _read(path), False
    finally:
        tmp.unlink(missing_ok=True)
    return tokens, True


def _read(path: Path) -> Tokens:
    if os.stat(path).st_mode & 0o077:
        # Someone widened it (a restore, a copy): secrets stay owner-only.
        log.warning("%s was readable by others; set back to mode 0600", path)
        os.chmod(path, 0o600)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: damaged token file; delete it to generate new tokens")
    admin, read = data.get("admin"), data.get("read")
    if not isinstance(admin, str) or not isinstance(read, str) or len(admin) < 16 or len(read) < 16:
        raise ValueError(f"{path}: damaged token file; delete it to generate new tokens")
    return Tokens(admin=admin, read=read)
