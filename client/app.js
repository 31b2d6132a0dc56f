// The setup page: UI only. The BLE protocol lives in ohm-channel.js.
import {
  IMPROV_SERVICE,
  NAME_PREFIX,
  OHM_SERVICE,
  OhmChannel,
  OhmError,
  normalizePop,
  popLooksValid,
} from "./ohm-channel.js";

const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);

let device = null;
let channel = null;
let liveTimer = null;
let liveDevice = null;
let scanRun = 0;

/** Show one message in the status line; kind = info | ok | error. */
function say(text, kind = "info") {
  const el = $("status");
  el.textContent = text;
  el.className = `status ${kind}`;
  el.hidden = !text;
}

function show(id, on = true) {
  $(id).hidden = !on;
}

/** What to tell a person about an error from Web Bluetooth or the channel. */
export function explain(err) {
  if (err instanceof OhmError) {
    switch (err.code) {
      case "bad_pop":
        return "That code does not match this gateway. Check the label (0 is zero, 1 is one) and try again.";
      case "locked": {
        const s = Number(err.extra?.retry_in_s) || 300;
        return `Too many wrong codes. Wait ${Math.ceil(s / 60)} minute(s), then try again.`;
      }
      case "window_closed":
        return (
          "The gateway's setup window is closed. Press its setup button (or restart it), " +
          "then tap Find gateway again within 5 minutes."
        );
      case "disconnected":
        return "The gateway disconnected. Move closer to it and tap Find gateway again.";
      case "timeout":
        return "The gateway did not answer in time. Move closer, then try again.";
      case "busy":
        return "The gateway is still busy with the previous step. Try again in a moment.";
      case "no_service":
        return "This is not an Ohm gateway (it has no Ohm setup service). Choose a device whose name starts with Ohm-.";
      case "no_session":
        return "Enter the code from the label first.";
      case "server_unreachable":
      case "server_timeout":
        return "The gateway is still starting up. Wait a few seconds and try again.";
      default:
        return err.message && err.message !== err.code ? err.message : `The gateway refused: ${err.code}.`;
    }
  }
  const name = err && err.name;
  const msg = String((err && err.message) || err || "");
  if (name === "NotFoundError" && /cancel/i.test(msg))
    return "No gateway was chosen. Tap Find gateway and pick the one whose name starts with Ohm-.";
  if (name === "NotFoundError")
    return "No gateway found. Is Bluetooth on, the gateway powered, and the phone within a few metres?";
  if (name === "SecurityError") return "Bluetooth is only allowed on a secure page (https:// or localhost).";
  if (name === "NetworkError") return "The connection to the gateway failed or was lost. Move closer and try again.";
  if (name === "NotAllowedError") return "Bluetooth permission was denied. Allow it in the browser settings.";
  return `Something went wrong: ${msg || name || "unknown error"}`;
}

// ---- step 1: find --------------------------------------------------------------------------------------------

async function findGateway() {
  say("");
  stopLive();
  if (channel) channel.close();
  channel = null;
  sessionShown(false);
  try {
    device = await navigator.bluetooth.requestDevice({
      filters: [{ namePrefix: NAME_PREFIX }],
      optionalServices: [OHM_SERVICE, IMPROV_SERVICE],
    });
  } catch (err) {
    say(explain(err), "error");
    return;
  }
  say(`Connecting to ${device.name || "the gateway"}…`);
  try {
    const opened = await OhmChannel.open(device);
    channel = opened;
    opened.onDisconnect(() => opened === channel && onDisconnected());
    const info = opened.gatewayInfo;
    const name = info.name || device.name || "gateway";
    $("gateway-name").textContent = `Connected to ${name}.`;
    show("gateway-name");
    show("pop");
    if (info.window === false) {
      say(explain(new OhmError("window_closed")), "error");
    } else {
      say(`Found ${name}. Enter the code from its label.`, "ok");
    }
    $("pop-input").focus();
  } catch (err) {
    say(explain(err), "error");
  }
}

function onDisconnected() {
  stopLive();
  channel = null;
  sessionShown(false);
  show("pop", false);
  say(explain(new OhmError("disconnected")), "error");
}

// ---- step 2: PoP ---------------------------------------------------------------------------------------------

async function proveCode(event) {
  event.preventDefault();
  if (!channel) return say("Find the gateway first.", "error");
  const pop = normalizePop($("pop-input").value);
  if (!popLooksValid(pop)) return say("The code on the label has 10 letters and digits. Check it and try again.", "error");
  busy("pop-btn", true);
  say("Checking the code…");
  try {
    await channel.handshake(pop);
    say("Connected securely. Set up Wi-Fi, the owner and your devices below.", "ok");
    show("pop", false);
    sessionShown(true);
    channel
      .rest("GET", "/api/wifi")
      .then((st) => suggestHosts(st && st.ip))
      .catch(() => undefined); // a gateway without Wi-Fi status: the person types the addresses
  } catch (err) {
    say(explain(err), "error");
  } finally {
    busy("pop-btn", false);
  }
}

function sessionShown(on) {
  for (const id of ["wifi", "owner", "token", "devices"]) show(id, on);
  if (!on) show("live", false);
}

function busy(id, on) {
  $(id).disabled = on;
  $(id).setAttribute("aria-busy", on ? "true" : "false");
}

// ---- step 3: Wi-Fi -------------------------------------------------------------------------------------------

/** Pull a list of networks out of the server's answer (tolerant of field names). */
export function networksOf(body) {
  const list = (body && (body.networks || body.aps || body.results)) || (Array.isArray(body) ? body : []);
  const seen = new Map();
  for (const n of list) {
    const ssid = typeof n === "string" ? n : n.ssid;
    if (!ssid) continue;
    const signal = Number(n.signal ?? n.strength ?? n.quality ?? 0);
    const secure = n.secure ?? (n.security ? !/^(open|none|)$/i.test(String(n.security)) : true);
    if (!seen.has(ssid) || seen.get(ssid).signal < signal) seen.set(ssid, { ssid, signal, secure });
  }
  return [...seen.values()].sort((a, b) => b.signal - a.signal);
}

async function wifiScan() {
  busy("wifi-scan-btn", true);
  say("Scanning for Wi-Fi networks…");
  try {
    const nets = networksOf(await channel.wifiScan());
    const list = $("wifi-list");
    list.replaceChildren();
    for (const n of nets) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "choice";
      b.textContent = n.ssid;
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = n.secure ? "secured" : "open";
      b.append(" ", tag);
      b.dataset.ssid = n.ssid;
      if (n.signal) b.title = `signal ${n.signal}`;
      b.addEventListener("click", () => {
        $("wifi-ssid").value = n.ssid;
        $("wifi-password").focus();
      });
      li.append(b);
      list.append(li);
    }
    say(nets.length ? `Found ${nets.length} network(s). Pick yours.` : "No networks found. Type the name below.", "ok");
  } catch (err) {
    say(explain(err), "error");
  } finally {
    busy("wifi-scan-btn", false);
  }
}

async function wifiJoin(event) {
  event.preventDefault();
  const ssid = $("wifi-ssid").value.trim();
  busy("wifi-join-btn", true);
  say(`Joining ${ssid}…`);
  try {
    const body = (await channel.wifiConnect(ssid, $("wifi-password").value)) || {};
    $("wifi-password").value = ""; // do not keep the password on screen longer than needed
    const where = body.ip || body.address || body.url || "";
    suggestHosts(body.ip);
    $("wifi-result").textContent = `Joined ${ssid}${where ? ` (${where})` : ""}.`;
    show("wifi-result");
    say(`The gateway is on ${ssid}.`, "ok");
  } catch (err) {
    say(`Could not join ${ssid}: ${explain(err)}`, "error");
  } finally {
    busy("wifi-join-btn", false);
  }
}

// ---- step 4: owner and token ---------------------------------------------------------------------------------

async function saveOwner(event) {
  event.preventDefault();
  const data = { owner: $("owner-input").value.trim() };
  const name = $("owner-name").value.trim();
  if (name) data.name = name;
  if ($("owner-force").checked) data.force = true;
  busy("owner-btn", true);
  try {
    await channel.rest("POST", "/api/owner/initialize", data);
    $("owner-result").textContent = `Owner set to ${data.owner}.`;
    show("owner-result");
    say("Owner saved.", "ok");
  } catch (err) {
    if (err.status === 409) {
      show("owner-replace");
      say("This gateway already has an owner. Tick “Replace the current owner” and save again to change it.", "error");
    } else {
      say(`Could not save the owner: ${explain(err)}`, "error");
    }
  } finally {
    busy("owner-btn", false);
  }
}

async function showToken() {
  busy("pair-btn", true);
  try {
    $("token-value").textContent = await channel.pair();
    show("token-box");
    say("Copy the admin token and keep it somewhere safe.", "ok");
  } catch (err) {
    say(explain(err), "error");
  } finally {
    busy("pair-btn", false);
  }
}

async function copyToken() {
  const text = $("token-value").textContent;
  try {
    await navigator.clipboard.writeText(text);
    say("Admin token copied.", "ok");
  } catch {
    // Clipboard access can be refused: select the text so a long-press copies it.
    const range = document.createRange();
    range.selectNodeContents($("token-value"));
    const sel = getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    say("Copying was refused by the browser: the token is selected, copy it by hand.", "error");
  }
}

// ---- step 5: devices -----------------------------------------------------------------------------------------

/** "502, 1502" -> [502, 1502]; throws a readable message on bad input. */
export function parsePorts(text) {
  const ports = String(text)
    .split(/[\s,;]+/)
    .filter(Boolean)
    .map((p) => Number(p));
  if (!ports.length || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535))
    throw new Error("Ports are numbers from 1 to 65535, separated by commas.");
  return ports;
}

/** "192.168.1.23" (or with "/24") -> "192.168.1.0/24": the gateway's own subnet, where its devices usually are. */
export function subnetOf(ip) {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.\d{1,3}(?:\/\d+)?$/.exec(String(ip || ""));
  return m && !["127", "0"].includes(m[1]) ? `${m[1]}.${m[2]}.${m[3]}.0/24` : null;
}

function suggestHosts(ip) {
  const net = subnetOf(ip);
  if (net && !$("scan-hosts").value) $("scan-hosts").value = net;
}

/** A device id the gateway accepts (letters, digits, - _ .; at most 64). */
export function deviceIdFor(found) {
  const where = found.host ? found.host.split(".").pop() : String(found.device || "").split("/").pop();
  const base = `${found.profile || "device"}-${where}-${found.unit_id}`;
  return base
    .replace(/[^A-Za-z0-9._-]+/g, "-")
    .replace(/-{2,}/g, "-")
    .slice(0, 64);
}

async function startScan(event) {
  event.preventDefault();
  let ports;
  try {
    ports = parsePorts($("scan-ports").value);
  } catch (err) {
    return say(err.message, "error");
  }
  const run = ++scanRun;
  busy("scan-btn", true);
  $("scan-found").replaceChildren();
  try {
    let st = await channel.rest("POST", "/api/scan", { hosts: $("scan-hosts").value.trim(), ports });
    const id = st.scan_id;
    while (run === scanRun) {
      $("scan-progress").textContent = `Searching… ${st.done}/${st.total} checked, ${st.found.length} found.`;
      show("scan-progress");
      renderFound(st.found);
      if (st.finished) break;
      await sleep(POLL_MS);
      st = await channel.rest("GET", `/api/scan/${encodeURIComponent(id)}`);
    }
    $("scan-progress").textContent = `Search done: ${st.found.length} device(s) found.`;
    say(st.found.length ? "Pick a device to add." : "No device answered. Check the addresses and ports.", "ok");
  } catch (err) {
    say(`Search failed: ${explain(err)}`, "error");
  } finally {
    busy("scan-btn", false);
  }
}

function renderFound(found) {
  const list = $("scan-found");
  list.replaceChildren();
  for (const f of found) {
    const li = document.createElement("li");
    const where = f.host ? `${f.host}:${f.port}` : f.device;
    const what = [f.manufacturer, f.model].filter(Boolean).join(" ") || f.profile || "unknown device";
    const label = document.createElement("span");
    label.textContent = `${what} at ${where}, unit ${f.unit_id}`;
    li.append(label);
    const b = document.createElement("button");
    b.type = "button";
    b.className = "choice";
    b.textContent = f.profile ? "Add" : "No profile";
    b.disabled = !f.profile;
    b.addEventListener("click", () => addDevice(f, b));
    li.append(b);
    list.append(li);
  }
}

async function addDevice(found, button) {
  const data = { id: deviceIdFor(found), profile: found.profile, transport: found.transport, unit_id: found.unit_id };
  if (found.host) Object.assign(data, { host: found.host, port: found.port });
  if (found.device) Object.assign(data, { device: found.device, baudrate: found.baudrate });
  button.disabled = true;
  try {
    let added;
    try {
      added = await channel.rest("POST", "/api/devices", data);
    } catch (err) {
      if (err.status !== 409) throw err;
      added = { device: { id: data.id } }; // already configured: just show its values
    }
    button.textContent = "Added";
    say(`Added ${added.device.id}. Live values follow.`, "ok");
    startLive(added.device.id);
  } catch (err) {
    button.disabled = false;
    say(`Could not add the device: ${explain(err)}`, "error");
  }
}

// ---- live values ---------------------------------------------------------------------------------------------

function startLive(id) {
  stopLive();
  liveDevice = id;
  $("live-device").textContent = id;
  show("live");
  const tick = async () => {
    if (liveDevice !== id || !channel) return;
    try {
      renderReadings(await channel.rest("GET", `/api/devices/${encodeURIComponent(id)}/readings`));
    } catch (err) {
      $("live-state").textContent = explain(err);
    }
    if (liveDevice === id && channel) liveTimer = setTimeout(tick, POLL_MS); // next poll after this one answered
  };
  tick();
}

function stopLive() {
  clearTimeout(liveTimer);
  liveTimer = null;
  liveDevice = null;
}

function renderReadings(reply) {
  const snap = reply && reply.snapshot;
  if (!snap) {
    $("live-state").textContent = "Waiting for the first reading…";
    return;
  }
  const at = new Date(snap.ts * 1000).toLocaleTimeString();
  $("live-state").textContent = snap.online ? `Online, read at ${at}.` : `Offline: ${snap.error || "no answer"}`;
  const body = $("live-table").tBodies[0];
  body.replaceChildren();
  for (const [name, p] of Object.entries(snap.points || {})) {
    const tr = document.createElement("tr");
    tr.dataset.point = name;
    const value = typeof p.value === "number" ? String(Math.round(p.value * 1000) / 1000) : String(p.value ?? "–");
    for (const text of [name, value, p.unit || ""]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    body.append(tr);
  }
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// ---- start ---------------------------------------------------------------------------------------------------

function init() {
  if (!("bluetooth" in navigator) || !navigator.bluetooth) {
    show("unsupported");
    show("find", false);
    const ios = /iPhone|iPad|iPod/.test(navigator.userAgent);
    $("unsupported-detail").textContent = ios
      ? "You are on iOS: every browser there uses Safari's engine, which has no Web Bluetooth."
      : "This browser has no Web Bluetooth (or it is turned off).";
    document.body.dataset.ready = "1";
    return;
  }
  // Chrome knows whether there is a Bluetooth adapter at all; say so before the person taps anything.
  navigator.bluetooth.getAvailability?.().then(
    (ok) => ok || say("This device has no Bluetooth, or Bluetooth is off. Turn it on, then tap Find gateway.", "error"),
    () => undefined,
  );
  $("find-btn").addEventListener("click", findGateway);
  $("pop-form").addEventListener("submit", proveCode);
  $("wifi-scan-btn").addEventListener("click", wifiScan);
  $("wifi-form").addEventListener("submit", wifiJoin);
  $("owner-form").addEventListener("submit", saveOwner);
  $("pair-btn").addEventListener("click", showToken);
  $("copy-btn").addEventListener("click", copyToken);
  $("scan-form").addEventListener("submit", startScan);
  document.body.dataset.ready = "1";
}

init();
