// Ohm BLE channel, protocol v1 (bluetooth/PROTOCOL.md): framing, handshake, sealing, request/response.
// No UI here and no libraries: WebCrypto does ECDH P-256, HKDF-SHA256 and AES-256-GCM.

export const OHM_SERVICE = "6f686d00-0000-4000-8000-6f686d000001";
export const OHM_RX = "6f686d00-0000-4000-8000-6f686d000002";
export const OHM_TX = "6f686d00-0000-4000-8000-6f686d000003";
export const OHM_INFO = "6f686d00-0000-4000-8000-6f686d000004";
export const IMPROV_SERVICE = "00467768-6228-2272-4663-277478268000";
export const NAME_PREFIX = "Ohm-";

// Web Bluetooth does not tell a page the negotiated ATT MTU, so we pick a chunk that fits the smallest MTU phones
// commonly use (185): one write may carry MTU - 3 = 182 bytes, minus our 3-byte header leaves 179 bytes of payload.
// Bigger chunks would need ATT long writes, which BlueZ/bless do not offer for our characteristic.
export const CHUNK_PAYLOAD = 179;

/** Payload bytes per chunk for a known ATT MTU (a gateway may report it in its info); 179 when unknown. */
export function chunkPayloadFor(mtu) {
  return Number.isInteger(mtu) && mtu >= 23 ? Math.min(mtu - 3, 512) - 3 : CHUNK_PAYLOAD;
}
export const MAX_MESSAGE = 60 * 1024;
export const MAX_CHUNKS = 255;
export const LAST = 0x01;
export const DEFAULT_TIMEOUT_MS = 10000;
const BUSY_RETRIES = 5;
const BUSY_PAUSE_MS = 1000;

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** An error the UI can explain: `code` is the protocol's error code (or ours), `status` its HTTP-like status. */
export class OhmError extends Error {
  constructor(code, message, status = 0, extra = {}) {
    super(message || code);
    this.name = "OhmError";
    this.code = code;
    this.status = status;
    this.extra = extra;
  }
}

/** Base64url without padding (RFC 4648 section 5). */
export function b64url(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Decode base64url with or without padding. */
export function fromB64url(text) {
  const s = text.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(s + "===".slice((s.length + 3) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** The label's PoP as the gateway expects it: upper case, no spaces or dashes, O->0, I/L->1 (Crockford). */
export function normalizePop(text) {
  return String(text)
    .toUpperCase()
    .replace(/[\s-]/g, "")
    .replace(/O/g, "0")
    .replace(/[IL]/g, "1");
}

/** True if `pop` (normalized) looks like a label code: 10 Crockford base32 characters. */
export function popLooksValid(pop) {
  return /^[0-9A-HJKMNP-TV-Z]{10}$/.test(pop);
}

/** Split one message into chunks `[req][idx][flags][payload...]` of at most `payloadMax` payload bytes. */
export function splitChunks(req, bytes, payloadMax = CHUNK_PAYLOAD) {
  if (bytes.length > MAX_MESSAGE) throw new OhmError("too_large", `message of ${bytes.length} B is over 60 KiB`, 413);
  const count = Math.max(1, Math.ceil(bytes.length / payloadMax));
  if (count > MAX_CHUNKS) throw new OhmError("too_large", `message needs ${count} chunks (max ${MAX_CHUNKS})`, 413);
  const chunks = [];
  for (let i = 0; i < count; i++) {
    const part = bytes.subarray(i * payloadMax, (i + 1) * payloadMax);
    const chunk = new Uint8Array(3 + part.length);
    chunk[0] = req & 0xff;
    chunk[1] = i;
    chunk[2] = i === count - 1 ? LAST : 0;
    chunk.set(part, 3);
    chunks.push(chunk);
  }
  return chunks;
}

/** Reassembles notified chunks into messages; `push` returns `{req, bytes}` when a message is complete. */
export class Reassembler {
  constructor() {
    this.reset();
  }

  reset() {
    this.req = null;
    this.parts = [];
    this.size = 0;
  }

  push(chunk) {
    if (chunk.length < 3) return null; // not a chunk: nothing to assemble
    const [req, idx, flags] = chunk;
    if (idx === 0) {
      this.reset(); // a new message replaces a partial one (the gateway gave up on it)
      this.req = req;
    } else if (req !== this.req || idx !== this.parts.length) {
      this.reset(); // a stray or out-of-order chunk: the message it belonged to is lost
      return null;
    }
    this.parts.push(chunk.slice(3));
    this.size += chunk.length - 3;
    if (this.size > MAX_MESSAGE) {
      this.reset();
      return null;
    }
    if (!(flags & LAST)) return null;
    const bytes = new Uint8Array(this.size);
    let at = 0;
    for (const p of this.parts) {
      bytes.set(p, at);
      at += p.length;
    }
    this.reset();
    return { req, bytes };
  }
}

/** 12-byte nonce: direction byte (0 central->gateway, 1 gateway->central) + 11-byte big-endian counter. */
export function makeNonce(direction, counter) {
  const n = new Uint8Array(12);
  n[0] = direction;
  let c = BigInt(counter);
  for (let i = 11; i >= 1; i--) {
    n[i] = Number(c & 0xffn);
    c >>= 8n;
  }
  return n;
}

/** The counter carried in a nonce (bytes 1..11). */
export function nonceCounter(nonce) {
  let c = 0n;
  for (let i = 1; i < 12; i++) c = (c << 8n) | BigInt(nonce[i]);
  return c;
}

/** A fresh ephemeral ECDH P-256 key pair and its 65-byte uncompressed public point. */
export async function makeKeyPair() {
  const pair = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
  const pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { pair, pub };
}

/** key = HKDF-SHA256(ikm = ECDH(ours, theirs), salt, info = "ohm-ble-v1|" + pop) as an AES-256-GCM key. */
export async function deriveSessionKey(privateKey, peerPub, salt, pop) {
  const peer = await crypto.subtle.importKey("raw", peerPub, { name: "ECDH", namedCurve: "P-256" }, false, []);
  const shared = await crypto.subtle.deriveBits({ name: "ECDH", public: peer }, privateKey, 256);
  const ikm = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt, info: enc.encode("ohm-ble-v1|" + pop) },
    ikm,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

/** Seal `obj` as `{"box": b64url(nonce || ciphertext+tag)}` with AAD = the req byte. */
export async function seal(key, counter, req, obj) {
  const nonce = makeNonce(0, counter);
  const plain = enc.encode(JSON.stringify(obj));
  const ct = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: new Uint8Array([req]) }, key, plain),
  );
  const box = new Uint8Array(12 + ct.length);
  box.set(nonce);
  box.set(ct, 12);
  return b64url(box);
}

/** Open a gateway box; checks direction and that its counter is above `lastCounter`. Returns {counter, obj}. */
export async function open(key, lastCounter, req, boxText) {
  const box = fromB64url(boxText);
  if (box.length < 12 + 16 || box[0] !== 1) throw new OhmError("bad_box", "a reply from the gateway was malformed");
  const nonce = box.subarray(0, 12);
  const counter = nonceCounter(nonce);
  if (lastCounter !== null && counter <= lastCounter) throw new OhmError("replay", "a reply was replayed or reordered");
  let plain;
  try {
    plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: nonce, additionalData: new Uint8Array([req]) },
      key,
      box.subarray(12),
    );
  } catch {
    throw new OhmError("bad_box", "a reply from the gateway did not decrypt");
  }
  return { counter, obj: JSON.parse(dec.decode(plain)) };
}

/** Turn an error reply into an OhmError the UI maps to a message. */
export function replyError(msg) {
  const body = msg && typeof msg.body === "object" && msg.body ? msg.body : {};
  const code = msg.error || body.error || `http_${msg.status}`;
  const detail = msg.detail || body.detail || "";
  return new OhmError(code, detail || code, msg.status, msg);
}

/**
 * One session with a gateway over its Ohm GATT service.
 * Use: `const ch = await OhmChannel.open(device); await ch.handshake(pop); await ch.rest("GET", "/api/state")`.
 * Requests are queued: only one is in flight per connection, as the protocol requires.
 */
export class OhmChannel {
  constructor(device, rx, tx, info, options = {}) {
    this.device = device;
    this.rx = rx;
    this.tx = tx;
    this.infoChar = info;
    this.chunkPayload = options.chunkPayload || CHUNK_PAYLOAD;
    this.timeoutMs = options.timeoutMs || DEFAULT_TIMEOUT_MS;
    this.gatewayInfo = {};
    this.reassembler = new Reassembler();
    this.nextReq = 1;
    this.pending = null; // {req, resolve, reject, timer}
    this.queue = Promise.resolve();
    this.key = null;
    this.sendCounter = 0;
    this.recvCounter = null;
    this.connected = true;
    this.listeners = new Set();
    this._onValue = (event) => this._notified(event.target.value);
    this._onGone = () => this._disconnected();
  }

  /** Connect GATT, find the Ohm service and start notifications. */
  static async open(device, options = {}) {
    const server = device.gatt.connected ? device.gatt : await device.gatt.connect();
    let service;
    try {
      service = await server.getPrimaryService(OHM_SERVICE);
    } catch (err) {
      throw new OhmError("no_service", "this device has no Ohm setup service", 0, { cause: err });
    }
    const [rx, tx, info] = await Promise.all([
      service.getCharacteristic(OHM_RX),
      service.getCharacteristic(OHM_TX),
      service.getCharacteristic(OHM_INFO),
    ]);
    const ch = new OhmChannel(device, rx, tx, info, options);
    device.addEventListener("gattserverdisconnected", ch._onGone);
    tx.addEventListener("characteristicvaluechanged", ch._onValue);
    await tx.startNotifications();
    ch.gatewayInfo = await ch.info().catch(() => ({}));
    // A gateway that reports this connection's MTU gets chunks sized to it (smaller links keep working without
    // ATT long writes); otherwise the 179-byte default.
    if (!options.chunkPayload) ch.chunkPayload = chunkPayloadFor(ch.gatewayInfo.mtu);
    return ch;
  }

  /** Be told when the connection goes away: `fn()`. */
  onDisconnect(fn) {
    this.listeners.add(fn);
  }

  /** The info characteristic: `{v, name, window, id}`. */
  async info() {
    const view = await this.infoChar.readValue();
    return JSON.parse(dec.decode(new Uint8Array(view.buffer, view.byteOffset, view.byteLength)));
  }

  /** Prove the PoP: hello (ECDH), derive the key, send a sealed confirm, expect a sealed ready. */
  async handshake(popText) {
    const pop = normalizePop(popText);
    return this._serial(async () => {
      this.key = null;
      this.sendCounter = 0;
      this.recvCounter = null;
      const { pair, pub } = await makeKeyPair();
      const hello = await this._exchange({ op: "hello", v: 1, pub: b64url(pub) });
      if (hello.msg.status) throw replyError(hello.msg);
      if (hello.msg.op !== "hello" || !hello.msg.pub || !hello.msg.salt)
        throw new OhmError("bad_hello", "the gateway answered the handshake in a way this page does not understand");
      const key = await deriveSessionKey(pair.privateKey, fromB64url(hello.msg.pub), fromB64url(hello.msg.salt), pop);
      const req = this._req();
      const box = await seal(key, this.sendCounter++, req, { op: "confirm" });
      const reply = await this._exchange({ op: "confirm", box }, { req });
      if (!reply.msg.box) throw replyError(reply.msg.status ? reply.msg : { status: 401, error: "bad_pop" });
      const opened = await open(key, null, reply.req, reply.msg.box);
      if (opened.obj.op !== "ready") throw new OhmError("bad_hello", "the gateway did not confirm the session");
      this.key = key;
      this.recvCounter = opened.counter;
      return true;
    });
  }

  /** Send a sealed request object and return the opened reply (`{status, body}` or an error object). */
  async request(obj, timeoutMs) {
    return this._serial(async () => {
      for (let attempt = 0; ; attempt++) {
        if (!this.key) throw new OhmError("no_session", "enter the code from the label first", 401);
        const req = this._req();
        const box = await seal(this.key, this.sendCounter++, req, obj);
        const reply = await this._exchange({ box }, { req, timeoutMs });
        if (!reply.msg.box) {
          // 409 busy: the gateway still works on a request we stopped waiting for; its answer comes soon.
          if (reply.msg.error === "busy" && attempt < BUSY_RETRIES) {
            await new Promise((r) => setTimeout(r, BUSY_PAUSE_MS));
            continue;
          }
          throw replyError(reply.msg); // plaintext framing errors carry no data
        }
        const opened = await open(this.key, this.recvCounter, reply.req, reply.msg.box);
        this.recvCounter = opened.counter;
        return opened.obj;
      }
    });
  }

  /** A sealed request whose 4xx/5xx reply becomes an OhmError; returns the reply's body. */
  async call(obj, timeoutMs) {
    const reply = await this.request(obj, timeoutMs);
    if (!reply || typeof reply.status !== "number" || reply.status >= 400) throw replyError(reply || {});
    return reply.body;
  }

  /** A REST call forwarded to the gateway's API as admin: returns the JSON body or throws OhmError. */
  rest(method, path, body, timeoutMs) {
    const obj = { method, path };
    if (body !== undefined) obj.body = body;
    return this.call(obj, timeoutMs);
  }

  /** The admin token (pairing over the PoP-authorised session). */
  async pair() {
    return (await this.call({ op: "pair" })).admin_token;
  }

  /** Visible Wi-Fi networks (the gateway scans; takes a few seconds). */
  wifiScan() {
    return this.call({ op: "wifi_scan" }, 30000);
  }

  /** Join a Wi-Fi network. */
  wifiConnect(ssid, password) {
    return this.call({ op: "wifi_connect", ssid, password }, 45000);
  }

  /** Drop the session and disconnect (no disconnect callbacks: the caller asked for it). */
  close() {
    this.listeners.clear();
    this._disconnected();
    try {
      this.tx.removeEventListener("characteristicvaluechanged", this._onValue);
      this.device.removeEventListener("gattserverdisconnected", this._onGone);
      if (this.device.gatt.connected) this.device.gatt.disconnect();
    } catch {
      // already gone
    }
  }

  // ---- internals --------------------------------------------------------------------------------------------

  _req() {
    const req = this.nextReq;
    this.nextReq = (this.nextReq % 255) + 1; // 1..255: req 0 is what the gateway uses for unparseable chunks
    return req;
  }

  _serial(fn) {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  // Send one message and wait for the reply to the same req (plaintext JSON, parsed).
  async _exchange(obj, { req = this._req(), timeoutMs = this.timeoutMs } = {}) {
    if (!this.connected) throw new OhmError("disconnected", "the gateway is not connected");
    const chunks = splitChunks(req, enc.encode(JSON.stringify(obj)), this.chunkPayload);
    const answer = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = null;
        reject(new OhmError("timeout", `no answer from the gateway within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      this.pending = { req, resolve, reject, timer };
    });
    try {
      for (const chunk of chunks) {
        // With response: the write is acknowledged, so chunks arrive in order and none is dropped by a busy stack.
        await this.rx.writeValueWithResponse(chunk);
      }
    } catch (err) {
      this._settle(null, this.connected ? new OhmError("write_failed", String(err.message || err)) : null);
      if (!this.connected) throw new OhmError("disconnected", "the gateway disconnected during the request");
      throw err instanceof OhmError ? err : new OhmError("write_failed", String(err.message || err));
    }
    return answer;
  }

  _settle(value, error) {
    const p = this.pending;
    if (!p) return;
    clearTimeout(p.timer);
    this.pending = null;
    if (error) p.reject(error);
    else p.resolve(value);
  }

  _notified(view) {
    const chunk = new Uint8Array(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
    const done = this.reassembler.push(chunk);
    if (!done || !this.pending) return;
    let msg;
    try {
      msg = JSON.parse(dec.decode(done.bytes));
    } catch {
      return; // not JSON: cannot be an answer to anything
    }
    // Framing errors for req 0 (a chunk too short to carry a req) belong to whatever is in flight.
    if (done.req !== this.pending.req && done.req !== 0) return; // a late answer to a request that timed out
    this._settle({ req: this.pending.req, msg });
  }

  _disconnected() {
    if (!this.connected) return;
    this.connected = false;
    this.key = null;
    this.reassembler.reset();
    this._settle(null, new OhmError("disconnected", "the gateway disconnected during the request"));
    for (const fn of this.listeners) fn();
  }
}
