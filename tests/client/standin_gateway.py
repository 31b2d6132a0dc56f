"""A stand-in BLE gateway for the client tests: bumble GATT peripheral speaking bluetooth/PROTOCOL.md v1.

Written from the protocol text alone (an independent implementation, so the page is checked against the contract,
not against one implementation's quirks). REST calls go over real HTTP to a real `server` gateway on loopback.
It was the peer until the bluetooth service landed; now it serves the tests that need what the real service does
not offer: answers held as long as a test likes (`local`), and the proposed `mtu` in the info value.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from bumble.core import AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

OHM_SERVICE = "6f686d00-0000-4000-8000-6f686d000001"
OHM_RX = "6f686d00-0000-4000-8000-6f686d000002"
OHM_TX = "6f686d00-0000-4000-8000-6f686d000003"
OHM_INFO = "6f686d00-0000-4000-8000-6f686d000004"
MAX_MESSAGE = 60 * 1024

Local = Callable[[dict[str, Any]], Awaitable[tuple[int, Any]]]


def b64(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    """Base64url with or without padding."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Session:
    """Per-connection state: reassembly, handshake keys, counters."""

    def __init__(self) -> None:
        self.req: int | None = None
        self.parts: list[bytes] = []
        self.size = 0
        self.priv: ec.EllipticCurvePrivateKey | None = None
        self.pending_key: bytes | None = None
        self.key: bytes | None = None
        self.recv_counter = -1
        self.send_counter = 0


class StandinGateway:
    """Advertises `Ohm-XXXX`, serves the Ohm service and answers requests like the real service should."""

    def __init__(
        self,
        device: Device,
        pop: str,
        server_url: str,
        admin_token: str,
        local: dict[str, Local] | None = None,
        window: bool = True,
        report_mtu: bool = False,
    ) -> None:
        self.device = device
        self.pop = pop
        self.server_url = server_url
        self.admin_token = admin_token
        # Answers for what the server does not offer yet, keyed "op:wifi_scan" or "POST /api/owner/initialize".
        self.local = dict(local or {})
        self.window = window
        self.report_mtu = report_mtu
        self.sessions: dict[int, Session] = {}
        self.requests: list[dict[str, Any]] = []  # opened requests, for the test to check what crossed the air
        self._tasks: set[asyncio.Task[None]] = set()
        self.rx = Characteristic(
            OHM_RX,
            Characteristic.Properties.WRITE | Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
            Characteristic.WRITEABLE,
            CharacteristicValue(write=self._on_write),
        )
        self.tx = Characteristic(OHM_TX, Characteristic.Properties.NOTIFY, Characteristic.READABLE, b"")
        self.info = Characteristic(
            OHM_INFO, Characteristic.Properties.READ, Characteristic.READABLE, CharacteristicValue(read=self._info)
        )
        device.add_service(Service(OHM_SERVICE, [self.rx, self.tx, self.info]))

    @property
    def name(self) -> str:
        """The advertised name."""
        return self.device.name

    async def start(self) -> None:
        """Power on and advertise the name (flags + complete local name fit the 31 bytes)."""
        await self.device.power_on()
        self.device.advertising_data = bytes(
            AdvertisingData(
                [
                    (AdvertisingData.FLAGS, bytes([0x06])),
                    (AdvertisingData.COMPLETE_LOCAL_NAME, self.device.name.encode()),
                ]
            )
        )
        await self.device.start_advertising(auto_restart=True, advertising_interval_min=20.0)

    async def stop(self) -> None:
        """Cancel answers still being worked on, then power off."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.device.power_off()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _info(self, connection: Connection) -> bytes:
        info = {"v": 1, "name": self.device.name, "window": self.window, "id": "ohm-standin"}
        if self.report_mtu:  # proposed addition to the info value: this connection's ATT MTU
            info["mtu"] = connection.att_mtu
        return json.dumps(info).encode()

    # ---- framing ---------------------------------------------------------------------------------------------

    def _on_write(self, connection: Connection, value: bytes) -> None:
        sess = self.sessions.get(connection.handle)
        if sess is None:  # state lives as long as the connection
            sess = self.sessions[connection.handle] = Session()
            connection.once("disconnection", lambda *_: self.sessions.pop(connection.handle, None))
        value = bytes(value)
        if len(value) < 3:
            self._send(connection, value[0] if value else 0, {"status": 400, "error": "bad_chunk"})
            return
        req, idx, flags = value[0], value[1], value[2]
        if idx == 0:
            sess.req, sess.parts, sess.size = req, [], 0
        elif req != sess.req or idx != len(sess.parts):
            sess.req, sess.parts, sess.size = None, [], 0
            self._send(connection, req, {"status": 400, "error": "bad_chunk"})
            return
        sess.parts.append(value[3:])
        sess.size += len(value) - 3
        if sess.size > MAX_MESSAGE:
            sess.req, sess.parts, sess.size = None, [], 0
            self._send(connection, req, {"status": 413, "error": "too_large"})
            return
        if flags & 1:
            data = b"".join(sess.parts)
            sess.req, sess.parts, sess.size = None, [], 0
            self._spawn(self._handle(connection, sess, req, data))

    def _send(self, connection: Connection, req: int, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode()
        size = min(connection.att_mtu - 3, 512) - 3
        chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]

        async def push() -> None:
            for i, part in enumerate(chunks):
                flags = 1 if i == len(chunks) - 1 else 0
                await self.device.notify_subscriber(connection, self.tx, bytes([req, i, flags]) + part)

        self._spawn(push())

    # ---- messages --------------------------------------------------------------------------------------------

    async def _handle(self, connection: Connection, sess: Session, req: int, data: bytes) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            self._send(connection, req, {"status": 400, "error": "bad_json"})
            return
        if msg.get("op") == "hello":
            if not self.window:
                self._send(connection, req, {"status": 403, "error": "window_closed"})
                return
            sess.priv = ec.generate_private_key(ec.SECP256R1())
            peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(msg["pub"]))
            salt = os.urandom(16)
            shared = sess.priv.exchange(ec.ECDH(), peer)
            info = f"ohm-ble-v1|{self.pop}".encode()
            sess.pending_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(shared)
            sess.key, sess.recv_counter, sess.send_counter = None, -1, 0
            pub = sess.priv.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
            self._send(connection, req, {"op": "hello", "v": 1, "pub": b64(pub), "salt": b64(salt)})
            return
        if msg.get("op") == "confirm":
            opened = self._open(sess.pending_key, sess, req, msg.get("box", ""))
            if opened != {"op": "confirm"}:
                self._send(connection, req, {"status": 401, "error": "bad_pop"})
                return
            sess.key = sess.pending_key
            self._send(connection, req, self._seal(sess, req, {"op": "ready"}))
            return
        if sess.key is None:
            self._send(connection, req, {"status": 401, "error": "no_session"})
            return
        opened = self._open(sess.key, sess, req, msg.get("box", ""))
        if opened is None:
            self._send(connection, req, {"status": 400, "error": "bad_box"})
            return
        self.requests.append(opened)
        reply = await self._answer(opened)
        self._send(connection, req, self._seal(sess, req, reply))

    def _open(self, key: bytes | None, sess: Session, req: int, box_text: str) -> Any:
        if key is None:
            return None
        try:
            box = unb64(box_text)
            counter = int.from_bytes(box[1:12], "big")
            if box[0] != 0 or counter <= sess.recv_counter:
                return None
            plain = AESGCM(key).decrypt(box[:12], box[12:], bytes([req]))
        except Exception:  # noqa: BLE001 - any malformed box is the same answer: bad_box
            return None
        sess.recv_counter = counter
        return json.loads(plain)

    def _seal(self, sess: Session, req: int, obj: dict[str, Any]) -> dict[str, str]:
        assert sess.key is not None
        nonce = b"\x01" + sess.send_counter.to_bytes(11, "big")
        sess.send_counter += 1
        return {"box": b64(nonce + AESGCM(sess.key).encrypt(nonce, json.dumps(obj).encode(), bytes([req])))}

    async def _answer(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg.get("op")
        key = f"op:{op}" if op else f"{msg.get('method', 'GET')} {msg.get('path')}"
        if key in self.local:
            status, body = await self.local[key](msg)
            return {"status": status, "body": body}
        if op == "pair":
            return {"status": 200, "body": {"admin_token": self.admin_token}}
        if op in ("wifi_scan", "wifi_connect"):
            path = "/api/wifi/scan" if op == "wifi_scan" else "/api/wifi/connect"
            body = {} if op == "wifi_scan" else {"ssid": msg.get("ssid"), "password": msg.get("password")}
            return await asyncio.to_thread(self._http, "POST", path, body)
        if op is not None:
            return {"status": 400, "error": "unknown_op", "detail": f"no op {op!r}"}
        path = str(msg.get("path", ""))
        if not path.startswith("/api/"):
            return {"status": 400, "error": "bad_path", "detail": "only /api/ paths are forwarded"}
        return await asyncio.to_thread(self._http, str(msg.get("method", "GET")), path, msg.get("body"))

    def _http(self, method: str, path: str, body: Any) -> dict[str, Any]:
        data = None if body is None or method in ("GET", "DELETE") else json.dumps(body).encode()
        request = urllib.request.Request(self.server_url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.admin_token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return {"status": resp.status, "body": json.loads(resp.read() or b"null")}
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return {"status": err.code, "body": json.loads(raw)}
            except ValueError:
                return {"status": err.code, "body": raw.decode(errors="replace")}
        except OSError as err:
            return {"status": 502, "error": "server_unreachable", "detail": str(err)}
