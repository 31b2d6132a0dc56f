"""Backend commands: parsing and checking (pure), and the handler registry other services extend.

A command is a compact JWS signed (ES256) by the configured backend key whose payload is
`{"id", "cmd", "args", "exp", "gw"}`. Unsigned, malformed, badly signed, expired, misaddressed
and replayed commands are refused with a reason; replays are caught by the outbox's
seen_commands table, which keeps ids until they expire (so a restart does not reopen them).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from server.crypto.jws import JwsError, split, verify_signature

log = logging.getLogger("ohm.commands")

ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
NAME_RE = re.compile(r"[a-z][a-z0-9_.]{0,63}")
MAX_COMMAND = 64 * 1024
DEFERRED = object()  # a handler returns this when it will call reply()/fail() later


class Rejected(Exception):
    """A command refused, with the reason sent back on /cmd/result."""

    def __init__(self, reason: str, cmd_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cmd_id = cmd_id


@dataclass(frozen=True)
class Command:
    """A checked command (signature, addressee and expiry hold; replay not yet checked)."""

    id: str
    name: str
    args: dict[str, Any]
    exp: float


def _safe_id(value: Any) -> str | None:
    return value if isinstance(value, str) and ID_RE.fullmatch(value) else None


def parse_command(
    raw: bytes,
    *,
    backend_key: ec.EllipticCurvePublicKey | None,
    gateway_id: str,
    now: float,
    max_ttl: float = 3600.0,
) -> Command:
    """The command in `raw`, or Rejected with a reason (never another exception)."""
    if len(raw) > MAX_COMMAND:
        raise Rejected("malformed: too large")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise Rejected("malformed: not UTF-8") from None
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            raise Rejected("malformed: not JSON") from None
        raise Rejected("unsigned: commands must be a JWS signed by the backend key", _safe_id(obj.get("id")))
    try:
        _header, payload, signing_input, sig = split(text)
    except JwsError as exc:
        raise Rejected(f"malformed: {exc}") from None
    cmd_id = _safe_id(payload.get("id"))
    if backend_key is None:
        raise Rejected("commands disabled: no backend key configured", cmd_id)
    if not verify_signature(signing_input, sig, backend_key):
        raise Rejected("bad signature", cmd_id)
    if cmd_id is None:
        raise Rejected("malformed: id must be 1-64 characters of A-Z a-z 0-9 . _ : -")
    name, args, exp = payload.get("cmd"), payload.get("args", {}), payload.get("exp")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise Rejected("malformed: cmd missing or invalid", cmd_id)
    if not isinstance(args, dict):
        raise Rejected("malformed: args must be an object", cmd_id)
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise Rejected("malformed: exp (expiry, epoch seconds) missing", cmd_id)
    if payload.get("gw") != gateway_id:
        raise Rejected("wrong gateway", cmd_id)
    if exp < now:
        raise Rejected("expired", cmd_id)
    if exp > now + max_ttl:
        raise Rejected(f"expiry too far ahead (at most {max_ttl:g} s)", cmd_id)
    return Command(cmd_id, name, args, float(exp))


@dataclass
class CommandRequest:
    """What a handler gets: the command, the gateway, and reply()/fail() for deferred answers."""

    id: str
    name: str
    args: dict[str, Any]
    gateway: Any
    _finish: Callable[[bool, Any, str | None], None] = field(repr=False)
    _done: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reply(self, result: Any = None) -> None:
        """Finish successfully with `result` (JSON-able); callable from any thread, once."""
        self._complete(True, result, None)

    def fail(self, reason: str) -> None:
        """Finish with a failure reason; callable from any thread, once."""
        self._complete(False, None, reason)

    def _complete(self, ok: bool, result: Any, reason: str | None) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._finish(ok, result, reason)


Handler = Callable[[CommandRequest], Any]
_HANDLERS: dict[str, Handler] = {}


def register_command(name: str, handler: Handler, *, replace: bool = False) -> None:
    """Make `name` a command; `handler(request)` runs as a CONTROL task and must not block.

    It returns the result (JSON-able), raises CommandFailed(reason), or returns DEFERRED and
    later calls request.reply(result) / request.fail(reason) (e.g. from an offload's `then`).
    """
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"bad command name {name!r}")
    if name in _HANDLERS and not replace:
        raise ValueError(f"command {name!r} is already registered")
    _HANDLERS[name] = handler


def handler_for(name: str) -> Handler | None:
    """The registered handler, if any."""
    return _HANDLERS.get(name)


def command_names() -> list[str]:
    """Every registered command."""
    return sorted(_HANDLERS)


class CommandFailed(Exception):
    """Raised by a handler: the command was valid but could not be carried out."""


# ---- built-in commands ---------------------------------------------------------------


def _ping(req: CommandRequest) -> dict[str, Any]:
    now = req.gateway.engine.clock.time() if req.gateway is not None else None
    return {"pong": True, "ts": now, "commands": command_names()}


def _settings_get(req: CommandRequest) -> dict[str, Any]:
    """Non-secret settings (secrets only say whether they are set), optionally only `keys`."""
    rows = req.gateway.config.describe()
    keys = req.args.get("keys")
    if keys is not None and (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)):
        raise CommandFailed("keys must be a list of setting names")
    wanted = set(keys) if keys else None
    return {key: value for key, value, _src in rows if wanted is None or key in wanted}


register_command("ping", _ping)
register_command("settings.get", _settings_get)
