"""API tokens: an admin and a read token generated at first boot, kept in data_dir/api_tokens.json (mode 0600)."""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from server.secretfile import create_once, owner_only

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
    tokens = Tokens(admin=secrets.token_urlsafe(32), read=secrets.token_urlsafe(32))
    if not create_once(path, json.dumps({"admin": tokens.admin, "read": tokens.read}).encode()):
        return _read(path), False  # another process created it first: theirs wins
    return tokens, True


def _read(path: Path) -> Tokens:
    owner_only(path)
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
