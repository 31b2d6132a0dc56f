"""ohm-channel.js on its own, in chromium: framing limits, reassembly, PoP normalisation, and WebCrypto sealing
checked against Python's `cryptography` (so both ends of protocol v1 agree byte for byte)."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.client.harness import Site

pytestmark = pytest.mark.integration

IMPORT = "window.ch = await import('./ohm-channel.js');"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def js(page: Any, body: str, arg: Any = None) -> Any:
    """Run `body` (an async function body with `ch` = the module and `arg`) in the page."""
    return await page.evaluate(f"async (arg) => {{ {IMPORT} const ch = window.ch; {body} }}", arg)


def test_framing_reassembly_and_pop_normalisation(site: Site) -> None:
    async def run() -> None:
        async with site.page() as b:
            got = await js(
                b.page,
                """
                const sizes = (n) => ch.splitChunks(9, new Uint8Array(n)).map((c) => [c[0], c[1], c[2], c.length]);
                const err = (fn) => { try { fn(); return null; } catch (e) { return [e.code, e.status]; } };
                const r = new ch.Reassembler();
                const parts = ch.splitChunks(4, new TextEncoder().encode("x".repeat(400)));
                const whole = [r.push(parts[0]), r.push(parts[1]), r.push(parts[2])];
                const skipped = [r.push(parts[0]), r.push(parts[2])];  // idx 1 lost: the message is dropped
                const restarted = [r.push(parts[0]), r.push(parts[0]), r.push(parts[1]), r.push(parts[2])];
                return {
                  empty: sizes(0), three: sizes(179 * 2 + 1), max: ch.splitChunks(1, new Uint8Array(255 * 179)).length,
                  tooMany: err(() => ch.splitChunks(1, new Uint8Array(255 * 179 + 1))),
                  tooBig: err(() => ch.splitChunks(1, new Uint8Array(61441), 512)),
                  whole: whole.map((m) => m && [m.req, m.bytes.length]),
                  skipped, restarted: restarted.map((m) => m && m.bytes.length),
                  short: r.push(new Uint8Array([1, 0])),
                  pops: ["7k3m9-qxr2d", " 7K3M 9QXR 2D ", "oOiIlL12345", "ABCDEFGHJU"].map(
                    (t) => [ch.normalizePop(t), ch.popLooksValid(ch.normalizePop(t))]),
                };
                """,
            )
            assert got["empty"] == [[9, 0, 1, 3]]
            assert got["three"] == [[9, 0, 0, 182], [9, 1, 0, 182], [9, 2, 1, 4]]
            assert got["max"] == 255  # at 179 B a chunk, a request may be 45,645 B (255 chunks)
            assert got["tooBig"] == ["too_large", 413]
            assert got["tooMany"] == ["too_large", 413]
            assert got["whole"] == [None, None, [4, 400]]
            assert got["skipped"] == [None, None]
            assert got["restarted"] == [None, None, None, 400]
            assert got["short"] is None
            assert got["pops"] == [
                ["7K3M9QXR2D", True],
                ["7K3M9QXR2D", True],
                ["00111112345", False],  # 11 characters
                ["ABCDEFGHJU", False],  # U is not Crockford base32
            ]

    site.run(run())


def test_webcrypto_session_matches_python(site: Site) -> None:
    """ECDH + HKDF(info = 'ohm-ble-v1|' + pop) + AES-GCM(nonce = dir || counter, AAD = req) on both sides."""
    pop = "7K3M9QXR2D"

    async def run() -> None:
        async with site.page() as b:
            page = b.page
            central_pub = await js(page, "window.kp = await ch.makeKeyPair(); return ch.b64url(window.kp.pub);")
            priv = ec.generate_private_key(ec.SECP256R1())
            salt = os.urandom(16)
            shared = priv.exchange(
                ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(central_pub))
            )
            key = HKDF(hashes.SHA256(), 32, salt, f"ohm-ble-v1|{pop}".encode()).derive(shared)
            pub = priv.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

            box = await js(
                page,
                """
                window.key = await ch.deriveSessionKey(window.kp.pair.privateKey, ch.fromB64url(arg.pub),
                                                       ch.fromB64url(arg.salt), arg.pop);
                window.wrongKey = await ch.deriveSessionKey(window.kp.pair.privateKey, ch.fromB64url(arg.pub),
                                                            ch.fromB64url(arg.salt), "0000000000");
                return ch.seal(window.key, 5, 7, {op: "confirm"});
                """,
                {"pub": b64(pub), "salt": b64(salt), "pop": pop},
            )
            raw = unb64(box)
            assert raw[:12] == b"\x00" + (5).to_bytes(11, "big")  # direction 0, counter 5
            assert json.loads(AESGCM(key).decrypt(raw[:12], raw[12:], bytes([7]))) == {"op": "confirm"}

            nonce = b"\x01" + (3).to_bytes(11, "big")
            reply = b64(nonce + AESGCM(key).encrypt(nonce, b'{"status":200,"body":{"ok":true}}', bytes([7])))
            got = await js(
                page,
                """
                const err = async (p) => { try { await p; return null; } catch (e) { return e.code; } };
                const ok = await ch.open(window.key, null, 7, arg.box);
                return {
                  counter: Number(ok.counter), obj: ok.obj,
                  replay: await err(ch.open(window.key, 3n, 7, arg.box)),
                  wrongReq: await err(ch.open(window.key, null, 8, arg.box)),
                  wrongPop: await err(ch.open(window.wrongKey, null, 7, arg.box)),
                  ownDirection: await err(ch.open(window.key, null, 7, arg.mine)),
                };
                """,
                {"box": reply, "mine": box},
            )
            assert got == {
                "counter": 3,
                "obj": {"status": 200, "body": {"ok": True}},
                "replay": "replay",
                "wrongReq": "bad_box",
                "wrongPop": "bad_box",
                "ownDirection": "bad_box",
            }

    site.run(run())


def test_page_helpers(site: Site) -> None:
    """The UI's pure helpers: Wi-Fi list shaping, ports, device ids, subnet suggestion, error wording."""

    async def run() -> None:
        async with site.page() as b:
            got = await b.page.evaluate(
                """async () => {
                  const app = await import('./app.js');  // already loaded by the page: not run twice
                  const ch = await import('./ohm-channel.js');
                  const err = (fn) => { try { fn(); return null; } catch (e) { return e.message; } };
                  return {
                    nets: app.networksOf({networks: [
                      {ssid: "Weak", signal: 20, security: "open"}, {ssid: "Home", signal: 40, security: "wpa2"},
                      {ssid: "Home", signal: 70, security: "wpa2"}, {ssid: ""}]}),
                    ports: app.parsePorts("502, 1502;8899"),
                    badPorts: err(() => app.parsePorts("502, 70000")),
                    id: app.deviceIdFor({profile: "sma", host: "192.168.1.40", unit_id: 3}),
                    serialId: app.deviceIdFor({profile: "sdm630", device: "/dev/ttyUSB0", unit_id: 1}),
                    subnets: ["192.168.1.23", "10.0.0.5/8", "127.0.0.1", null, "fe80::1"].map(app.subnetOf),
                    words: [
                      app.explain(new ch.OhmError("locked", "", 429, {retry_in_s: 61})),
                      app.explain(new ch.OhmError("http_404", "no device 'x'", 404)),
                      app.explain(new DOMException("User cancelled the requestDevice() chooser.", "NotFoundError")),
                      app.explain(new DOMException("Bluetooth adapter not available.", "NotFoundError")),
                    ],
                  };
                }"""
            )
            assert got["nets"] == [
                {"ssid": "Home", "signal": 70, "secure": True},
                {"ssid": "Weak", "signal": 20, "secure": False},
            ]
            assert got["ports"] == [502, 1502, 8899]
            assert "1 to 65535" in got["badPorts"]
            assert got["id"] == "sma-40-3"
            assert got["serialId"] == "sdm630-ttyUSB0-1"
            assert got["subnets"] == ["192.168.1.0/24", "10.0.0.0/24", None, None, None]
            locked, detail, cancelled, no_adapter = got["words"]
            assert locked == "Too many wrong codes. Wait 2 minute(s), then try again."
            assert detail == "no device 'x'"
            assert cancelled.startswith("No gateway was chosen")
            assert no_adapter.startswith("No gateway found")

    site.run(run())
