// Ohm dashboard: live frames over a WebSocket (1 Hz), the power history as hand-drawn SVG, actions and
// notifications fetched from the REST API when a frame says they changed. No library, no build step.
// Every text from the gateway goes in with textContent, never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "ohm.token";
  const ADMIN_KEY = "ohm.admin_token"; // entered in the control panel when the page's token is the read token
  const SVG_NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const FIRST_POINTS = ["pv.power_w", "inverter.power_w", "grid.power_w", "battery.power_w", "battery.soc_pct"];
  const $ = (id) => document.getElementById(id);

  let token = localStorage.getItem(TOKEN_KEY) || "";
  let adminToken = localStorage.getItem(ADMIN_KEY) || "";
  let ws = null;
  let attempt = 0; // reconnect attempts since the last good frame (for the backoff)
  let retryTimer = null;
  let watchdog = null;
  let lastFrameAt = 0;
  let everLive = false; // some frame arrived: old values are on screen
  let interval = 1;
  let seen = { actions: null, notes: null, devices: null };
  let historyTimer = null;
  let history = null;

  class AuthError extends Error {}

  async function api(path) {
    const resp = await fetch(path, { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
    if (resp.status === 401) throw new AuthError("token refused");
    if (resp.status === 429) throw new Error("too many failed logins; wait a minute");
    if (!resp.ok) throw new Error(path + ": HTTP " + resp.status);
    return resp.json();
  }

  // ---- small helpers ---------------------------------------------------------------------

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  function time(ts) {
    return ts ? new Date(ts * 1000).toLocaleTimeString() : "-";
  }

  function bytes(n) {
    if (n === null || n === undefined) return "-";
    const units = ["B", "kB", "MB", "GB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  function value(v, unit) {
    if (v === null || v === undefined) return "n/a";
    if (typeof v !== "number") return String(v);
    if (unit === "W" && Math.abs(v) >= 10000) return (v / 1000).toFixed(2) + " kW";
    if (unit === "Wh" && Math.abs(v) >= 10000) return (v / 1000).toFixed(1) + " kWh";
    const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
    const unitText = unit === "degC" ? "°C" : unit;
    return v.toFixed(digits) + (unitText ? " " + unitText : "");
  }

  function age(s) {
    if (s === null || s === undefined) return "no reading yet";
    if (s < 90) return Math.round(s) + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }

  let downSince = null;

  function setConn(state, detail) {
    const badge = $("conn");
    badge.className = "badge " + state;
    badge.textContent = state; // always the plain word: "live", "connecting" or "disconnected"
    const banner = $("banner");
    if (state === "disconnected" && token) {
      downSince = downSince || new Date();
      const shown = everLive ? "; the values below are from " + downSince.toLocaleTimeString() : "";
      banner.hidden = false;
      banner.textContent = "Disconnected from the gateway" + shown + (detail ? " (" + detail + ")" : "");
    } else {
      if (state === "live") downSince = null;
      banner.hidden = true;
    }
    document.body.dataset.conn = state;
  }

  // ---- login -----------------------------------------------------------------------------

  function showLogin(message) {
    stopLive();
    $("main").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    setConn("disconnected");
    $("banner").hidden = true;
    $("token").focus();
  }

  function forget(message) {
    token = "";
    adminToken = "";
    role = null;
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(ADMIN_KEY);
    showLogin(message);
  }

  async function openDashboard() {
    let info;
    try {
      info = await api("/api/dashboard");
    } catch (err) {
      if (err instanceof AuthError) return forget("That token was refused.");
      $("login").hidden = true;
      $("main").hidden = false;
      setConn("disconnected", err.message);
      scheduleRetry(openDashboard);
      return;
    }
    localStorage.setItem(TOKEN_KEY, token);
    $("login").hidden = true;
    $("main").hidden = false;
    $("logout").hidden = false;
    seen = { actions: null, notes: null, devices: null };
    startControl();
    loadHistory();
    clearInterval(historyTimer);
    historyTimer = setInterval(loadHistory, (info.history_interval_s || 10) * 1000);
    if (info.ws_port === null || info.ws_port === undefined) {
      setConn("disconnected", "live updates are off (api.ws_port = 0)");
      return;
    }
    connect(info);
  }

  // ---- WebSocket -------------------------------------------------------------------------

  function stopLive() {
    clearTimeout(retryTimer);
    clearInterval(watchdog);
    clearInterval(historyTimer);
    if (ws) {
      ws.onclose = null;
      ws.close();
      ws = null;
    }
  }

  function scheduleRetry(fn) {
    clearTimeout(retryTimer);
    // 1, 2, 4 ... 30 s, with jitter so many pages do not come back in step after a gateway restart.
    const delay = Math.min(30, 2 ** attempt) * (0.75 + Math.random() / 2);
    attempt = Math.min(attempt + 1, 6);
    setConn("disconnected", "retrying in " + Math.ceil(delay) + " s");
    retryTimer = setTimeout(fn, delay * 1000);
  }

  function connect(info) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = scheme + "//" + location.hostname + ":" + info.ws_port + info.ws_path;
    setConn("connecting");
    const sock = new WebSocket(url);
    ws = sock;
    sock.onopen = () => sock.send(JSON.stringify({ token: token }));
    sock.onmessage = (ev) => {
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      if (frame.type !== "frame") return;
      attempt = 0;
      everLive = true;
      lastFrameAt = Date.now();
      interval = frame.interval_s || 1;
      setConn("live");
      if (typeof frame.ts === "number") clockOffset = frame.ts - Date.now() / 1000;
      render(frame);
    };
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      ws = null;
      clearInterval(watchdog);
      if (ev.code === 4401) return forget("The gateway refused that token.");
      const why = ev.code === 4429 ? "too many failed logins" : ev.code === 1013 ? "too many dashboards open" : "";
      scheduleRetry(() => connect(info));
      if (why) setConn("disconnected", why + "; retrying");
    };
    clearInterval(watchdog);
    // A silent connection (a sleeping laptop, a dead Wi-Fi) looks open: no frame for 5 intervals means reconnect.
    watchdog = setInterval(() => {
      if (ws === sock && lastFrameAt && Date.now() - lastFrameAt > 5000 * interval) {
        lastFrameAt = 0;
        sock.close();
        ws = null;
        scheduleRetry(() => connect(info));
      }
    }, 1000);
  }

  // ---- rendering -------------------------------------------------------------------------

  function render(frame) {
    const gw = frame.gateway || {};
    if (gw.name) {
      $("gw-name").textContent = gw.name;
      document.title = gw.name + " - Ohm";
    }
    const state = $("gw-state");
    state.textContent = gw.state || "-";
    state.className = "big " + ({ online: "good", degraded: "warn", offline: "bad" }[gw.state] || "");
    const e = frame.engine || {};
    const late = e.lateness_ms || {};
    $("engine").textContent =
      "engine " + e.state + " · lateness p50 " + late.p50 + " ms, p99 " + late.p99 + " ms · queue " + e.queue_depth;
    renderUplink(frame.uplink);
    renderOutbox(frame.outbox);
    renderDevices(frame.devices || []);
    // A device added or removed may bring or take writable points.
    const devKey = (frame.devices || []).map((d) => d.id + "/" + d.profile).join(",");
    if (devKey !== seen.devices) {
      const first = seen.devices === null;
      seen.devices = devKey;
      if (!first) loadControl();
    }
    const a = frame.actions;
    if (a) {
      const key = a.rev + "/" + a.newest;
      if (key !== seen.actions) {
        seen.actions = key;
        loadActions();
      }
    }
    const n = frame.notifications;
    if (n) {
      const key = n.count + "/" + n.newest;
      if (key !== seen.notes) {
        seen.notes = key;
        loadNotes();
      }
    }
  }

  function renderUplink(u) {
    const main = $("uplink");
    const sub = $("uplink-sub");
    if (!u) {
      main.textContent = "not configured";
      main.className = "big";
      sub.textContent = "set mqtt.host to send telemetry";
      return;
    }
    main.textContent = u.connected ? "connected" : "disconnected";
    main.className = "big " + (u.connected ? "good" : "bad");
    sub.textContent =
      "sent " + u.published + " · acked " + u.acked + " · in flight " + u.inflight + " · reconnects " + u.connects;
  }

  function renderOutbox(o) {
    const main = $("outbox");
    const sub = $("outbox-sub");
    if (!o) {
      main.textContent = "-";
      sub.textContent = "no outbox in this gateway";
      return;
    }
    main.textContent = o.rows + " waiting";
    main.className = "big " + (o.rows > 1000 ? "warn" : "");
    sub.textContent = bytes(o.bytes) + " of " + bytes(o.max_bytes) + " · dropped " + o.dropped;
  }

  function sortedPoints(points) {
    const names = Object.keys(points);
    const rank = (n) => (FIRST_POINTS.includes(n) ? FIRST_POINTS.indexOf(n) : 100);
    return names.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  }

  function renderDevices(devices) {
    const box = $("devices");
    $("no-devices").hidden = devices.length > 0;
    const keep = new Set(devices.map((d) => d.id));
    for (const card of Array.from(box.children)) if (!keep.has(card.dataset.id)) card.remove();
    devices.forEach((d, i) => {
      let card = box.querySelector('[data-id="' + CSS.escape(d.id) + '"]');
      if (!card) card = el("article", "card");
      card.dataset.id = d.id;
      card.className = "card " + d.status;
      const head = el("header");
      head.append(el("h3", null, d.name || d.id), el("span", "badge " + d.status, d.status));
      // An offline device's last snapshot is the failed poll: say when the last good reading was instead.
      const when =
        d.status === "offline" ? (d.last_ok ? "last good reading " + time(d.last_ok) : "no good reading yet") : age(d.age_s);
      const meta = el("p", "sub", (d.name ? d.id + " · " : "") + (d.profile || "") + " · " + when);
      const list = el("dl", "points");
      for (const name of sortedPoints(d.points || {})) {
        const p = d.points[name];
        list.append(el("dt", null, name), el("dd", "q-" + p.q, value(p.v, p.u) + (p.q !== "ok" ? " (" + p.q + ")" : "")));
      }
      const parts = [head, meta, list];
      if (d.error && d.status !== "online") parts.push(el("p", "err", "last error: " + d.error));
      card.replaceChildren(...parts);
      if (box.children[i] !== card) box.insertBefore(card, box.children[i] || null);
    });
  }

  async function loadActions() {
    let data;
    try {
      data = await api("/api/actions?limit=20");
    } catch (err) {
      if (err instanceof AuthError) forget("That token was refused.");
      return;
    }
    const open = [...(data.active || []), ...(data.scheduled || [])];
    renderOpenActions(open);
    controlActions(open);
    loadControl(); // holders change with actions
    const list = $("actions");
    $("no-actions").hidden = data.actions.length > 0;
    list.replaceChildren(
      ...data.actions.map((a) => {
        const li = el("li");
        const cls = /^(refused|failed)/.test(a.result) ? a.result.split(":")[0] : "";
        li.append(el("div", "what", a.what));
        const meta = el("div", "meta");
        meta.append(
          time(a.at) + " · " + a.who + " · ",
          el("span", cls, a.result),
          a.revert ? " · reverted: " + a.revert : ""
        );
        li.append(meta);
        return li;
      })
    );
  }

  // Control actions still running or waiting (e.g. "charge 10 min"): what they hold and when they end.
  function renderOpenActions(open) {
    $("open-actions").replaceChildren(
      ...open.map((a) => {
        const li = el("li");
        li.append(el("div", "what", a.device + " · " + a.point + " = " + a.value + " (" + a.state + ")"));
        const parts = [a.who];
        if (a.revert_at) parts.push("reverts to " + a.revert_to + " at " + time(a.revert_at));
        if (a.next_run) parts.push("next run " + time(a.next_run));
        li.append(el("div", "meta", parts.join(" · ")));
        return li;
      })
    );
  }

  async function loadNotes() {
    let data;
    try {
      data = await api("/api/notifications");
    } catch (err) {
      if (err instanceof AuthError) forget("That token was refused.");
      return;
    }
    const items = data.notifications.slice(-20).reverse();
    $("no-notes").hidden = items.length > 0;
    $("notes").replaceChildren(
      ...items.map((n) => {
        const li = el("li");
        li.append(el("div", "what", n.kind + (n.device_id ? " · " + n.device_id : "")));
        const detail = n.detail && Object.keys(n.detail).length ? " · " + JSON.stringify(n.detail) : "";
        li.append(el("div", "meta", time(n.ts) + detail));
        return li;
      })
    );
  }

  // ---- control ---------------------------------------------------------------------------
  // One card per writable point: a value (or a switch for 0/1 points), a duration, a "Set ..." button, and the
  // point's open actions with a countdown and Cancel. Writes need the admin token: with the read token the panel
  // asks for the admin one and keeps it beside the read token.

  const DURATIONS = [["now", 0], ["10 min", 600], ["30 min", 1800], ["1 h", 3600], ["custom", -1]];
  const MAX_HOLD_S = 7 * 24 * 3600; // the API's limit for duration_s
  const CANCELLABLE = new Set(["scheduled", "applying", "active"]);

  let role = null; // of the page's token: "admin", "read" or null (not known yet)
  let controlCards = new Map(); // "device\npoint" -> { card, spec, its inputs, button and message lines }
  let openByPoint = new Map(); // "device\npoint" -> open actions (active and scheduled)
  let controlSeq = 0; // for unique element ids (labels need them)
  let clockOffset = 0; // gateway wall clock minus this browser's (s): a phone's clock may be off

  function writeToken() {
    return role === "admin" ? token : adminToken || token;
  }

  function canWrite() {
    return role !== "read" || Boolean(adminToken);
  }

  // GET /api/dashboard answers the role of the token it was sent with ("admin" or "read").
  async function probeRole(tok) {
    try {
      const resp = await fetch("/api/dashboard", { headers: { Authorization: "Bearer " + tok }, cache: "no-store" });
      if (resp.status === 401) return "refused";
      if (resp.ok) {
        const got = (await resp.json()).role;
        if (got === "admin" || got === "read") return got;
      }
    } catch (_) {
      // unknown: the first write tells
    }
    return null;
  }

  async function send(method, path, body) {
    const used = writeToken();
    const init = { method: method, headers: { Authorization: "Bearer " + used }, cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (_) {
      return { status: 0, data: { detail: "no answer from the gateway" } };
    }
    let data = {};
    try {
      data = await resp.json();
    } catch (_) {
      // an empty or non-JSON answer: the status says enough
    }
    if (resp.status === 401 && used === adminToken && adminToken) {
      setAdminToken("", "The admin token was refused; enter it again.");
    } else if (resp.status === 401) {
      forget("That token was refused.");
    } else if (resp.status === 403) {
      if (used === adminToken && adminToken) setAdminToken("", "That token is not the admin token.");
      else role = "read";
      renderAuth();
    }
    return { status: resp.status, data: data };
  }

  function setAdminToken(value, message) {
    adminToken = value;
    if (value) localStorage.setItem(ADMIN_KEY, value);
    else localStorage.removeItem(ADMIN_KEY);
    renderAuth(message);
  }

  function renderAuth(message) {
    const need = !canWrite();
    $("control-auth").hidden = !need && !message;
    if (message !== undefined) $("control-auth-error").textContent = message;
    else if (!need) $("control-auth-error").textContent = "";
    for (const b of document.querySelectorAll("#control-points button")) b.disabled = need || b.dataset.busy === "1";
  }

  async function useAdminToken(ev) {
    ev.preventDefault();
    const given = $("admin-token").value.trim();
    $("admin-token").value = "";
    if (!given) return;
    const got = await probeRole(given);
    if (got === "read") return renderAuth("That is the read token; changes need the admin token.");
    if (got === "refused") return renderAuth("That token was refused.");
    // null (the probe could not tell): keep it; a write that is refused drops it again.
    setAdminToken(given, "");
    $("control-auth").hidden = true;
  }

  async function startControl() {
    if (role === null) {
      const got = await probeRole(token);
      if (got === "admin" || got === "read") role = got;
    }
    if (role === "admin" && adminToken) setAdminToken("", undefined); // the page's own token is enough
    renderAuth();
    loadControl();
  }

  async function loadControl() {
    let data;
    try {
      data = await api("/api/control/points");
    } catch (err) {
      if (err instanceof AuthError) forget("That token was refused.");
      else if (/HTTP (404|503)$/.test(err.message)) $("control").hidden = true; // no control service running
      return; // a hiccup: the next change tries again
    }
    $("control").hidden = false;
    renderControl(data.points || []);
  }

  const keyOf = (device, point) => device + "\n" + point;
  const isSwitch = (p) => p.min === 0 && p.max === 1 && p.step === 1;

  function amount(v, p) {
    if (isSwitch(p)) return Number(v) === 1 ? "on" : "off";
    return String(v) + (p.unit ? " " + (p.unit === "degC" ? "°C" : p.unit) : "");
  }

  function span(s) {
    if (s < 60 || s % 60) return s + " s";
    if (s < 3600 || s % 3600) return s / 60 + " min";
    return s / 3600 + " h";
  }

  function left(until) {
    const s = Math.max(0, Math.round(until - (Date.now() / 1000 + clockOffset)));
    if (s < 60) return s + " s left";
    const m = Math.floor(s / 60);
    if (m < 60) return m + ":" + String(s % 60).padStart(2, "0") + " left";
    return Math.floor(m / 60) + " h " + (m % 60) + " min left";
  }

  function renderControl(points) {
    const box = $("control-points");
    $("no-control").hidden = points.length > 0;
    const keep = new Set();
    points.forEach((p, i) => {
      const key = keyOf(p.device, p.point);
      keep.add(key);
      let entry = controlCards.get(key);
      const shape = [p.unit, p.min, p.max, p.step].join("/");
      if (!entry || entry.shape !== shape) {
        if (entry) entry.card.remove();
        entry = buildControl(p);
        entry.shape = shape;
        controlCards.set(key, entry);
      }
      entry.spec = p;
      showHolder(entry);
      showOpen(entry);
      if (box.children[i] !== entry.card) box.insertBefore(entry.card, box.children[i] || null);
    });
    for (const [key, entry] of controlCards) {
      if (!keep.has(key)) {
        entry.card.remove();
        controlCards.delete(key);
      }
    }
    renderAuth();
  }

  function buildControl(p) {
    const n = ++controlSeq;
    const card = el("article", "card ctl");
    card.dataset.device = p.device;
    card.dataset.point = p.point;
    const head = el("header");
    head.append(el("h3", null, p.point), el("span", "badge idle", "free"));
    const limits = isSwitch(p)
      ? "on/off"
      : amount(p.min, p) + " to " + amount(p.max, p) + ", step " + p.step;
    const meta = el("p", "sub", p.device + " · " + limits + " · safe default " + amount(p.safe_default, p));
    const holder = el("p", "sub holder");

    const form = el("form", "set");
    form.noValidate = true; // the gateway checks range and step; its reason is shown next to the control
    let input;
    const valueBox = el("div", "field");
    if (isSwitch(p)) {
      input = el("input", "switch");
      input.type = "checkbox";
      input.setAttribute("role", "switch");
      input.checked = p.safe_default === 1;
      input.id = "ctl-v-" + n;
      const lab = el("label", "switch-label");
      lab.append(input, " on");
      valueBox.append(el("span", "lbl", "value"), lab);
    } else {
      input = el("input", "value");
      input.type = "number";
      input.min = String(p.min);
      input.max = String(p.max);
      input.step = String(p.step);
      input.inputMode = "decimal";
      input.required = true;
      input.value = String(p.safe_default);
      input.id = "ctl-v-" + n;
      const lab = el("label", "lbl", "value" + (p.unit ? " (" + p.unit + ")" : ""));
      lab.htmlFor = input.id;
      valueBox.append(lab, input);
    }
    const dur = el("select", "duration");
    dur.id = "ctl-d-" + n;
    for (const [label, s] of DURATIONS) {
      const opt = el("option", null, label);
      opt.value = String(s);
      dur.append(opt);
    }
    dur.value = "600";
    const durLab = el("label", "lbl", "for");
    durLab.htmlFor = dur.id;
    const durBox = el("div", "field");
    durBox.append(durLab, dur);
    const custom = el("input", "custom");
    custom.type = "number";
    custom.min = "1";
    custom.max = String(MAX_HOLD_S);
    custom.step = "1";
    custom.inputMode = "numeric";
    custom.value = "60";
    custom.id = "ctl-c-" + n;
    const customLab = el("label", "lbl", "seconds");
    customLab.htmlFor = custom.id;
    const customBox = el("div", "field");
    customBox.append(customLab, custom);
    customBox.hidden = true;
    const button = el("button", "set-btn");
    button.type = "submit";
    form.append(valueBox, durBox, customBox, button);
    const status = el("p", "status", "");
    status.setAttribute("role", "status");
    const error = el("p", "err ctl-err", "");
    error.setAttribute("role", "alert");
    const open = el("ul", "list open");
    card.append(head, meta, holder, form, error, status, open);

    const entry = { card, spec: p, input, dur, custom, customBox, button, holder, error, status, open };
    const relabel = () => {
      customBox.hidden = dur.value !== "-1";
      const body = request(entry);
      const s = body.duration_s;
      const v = isSwitch(entry.spec) ? (input.checked ? "on" : "off") : amount(input.value, entry.spec);
      const verb = isSwitch(entry.spec) ? "Switch " : "Set ";
      const custom = dur.value === "-1";
      const how = custom && !(s >= 1) ? " for … s" : s ? " for " + span(s) : " now";
      button.textContent = verb + v + how;
    };
    input.addEventListener("input", relabel);
    input.addEventListener("change", relabel);
    dur.addEventListener("change", relabel);
    custom.addEventListener("input", relabel);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      submitAction(entry);
    });
    relabel();
    return entry;
  }

  function request(entry) {
    const p = entry.spec;
    const value = isSwitch(p) ? (entry.input.checked ? 1 : 0) : Number(entry.input.value);
    const body = { device: p.device, point: p.point, value: value };
    const choice = Number(entry.dur.value);
    const s = choice === -1 ? Math.round(Number(entry.custom.value)) : choice;
    if (s) body.duration_s = s;
    return body;
  }

  function busy(button, on, text) {
    button.dataset.busy = on ? "1" : "";
    button.disabled = on || !canWrite();
    if (text) button.textContent = text;
  }

  async function submitAction(entry) {
    const p = entry.spec;
    entry.error.textContent = "";
    entry.status.textContent = "";
    const body = request(entry);
    if (!Number.isFinite(body.value) || entry.input.value === "") {
      entry.error.textContent = "Enter a value from " + amount(p.min, p) + " to " + amount(p.max, p) + ".";
      return;
    }
    if (Number(entry.dur.value) === -1 && !(body.duration_s >= 1 && body.duration_s <= MAX_HOLD_S)) {
      entry.error.textContent = "Enter a duration from 1 to " + MAX_HOLD_S + " seconds.";
      return;
    }
    const label = entry.button.textContent;
    busy(entry.button, true, "Setting…");
    const got = await send("POST", "/api/actions", body);
    busy(entry.button, false, label);
    const a = got.data.action;
    if (got.status === 201 && a) {
      if (a.state === "failed") entry.error.textContent = "The device did not take it: " + (a.result || "failed");
      else entry.status.textContent = describe(a);
    } else {
      entry.error.textContent = refusal(got, "setting");
    }
    loadActions();
  }

  function describe(a) {
    if (a.state === "active" && a.revert_at) return "Set; reverts to " + a.revert_to + " at " + time(a.revert_at) + ".";
    if (a.state === "done") return "Set; the device confirmed " + a.value + ".";
    return "Action " + a.id + ": " + a.state + (a.result ? " (" + a.result + ")" : "") + ".";
  }

  function refusal(got, doing) {
    const detail = got.data.detail || got.data.error || "";
    if (got.status === 409) return "Refused: " + detail;
    if (got.status === 422) return "Not accepted: " + detail;
    if (got.status === 403) return "Changes need the admin token (enter it above).";
    if (got.status === 401) return "The token was refused.";
    if (got.status === 0) return "Not sent: " + detail + ".";
    return "Failed " + doing + " (HTTP " + got.status + (detail ? ": " + detail : "") + ").";
  }

  function showHolder(entry) {
    const h = entry.spec.held_by;
    const badge = entry.card.querySelector("header .badge");
    badge.textContent = h ? "held" : "free";
    badge.className = "badge " + (h ? "waiting" : "idle");
    entry.holder.textContent = h
      ? "Held by " + h.who + " (" + h.priority + " priority" + (h.until ? ", until " + time(h.until) : "") + ")"
      : "Nobody holds this point.";
  }

  function showOpen(entry) {
    const mine = openByPoint.get(keyOf(entry.spec.device, entry.spec.point)) || [];
    entry.open.replaceChildren(
      ...mine.map((a) => {
        const li = el("li");
        li.dataset.action = a.id;
        li.append(el("div", "what", amount(a.value, entry.spec) + " · " + a.state + " · " + a.who));
        const meta = el("div", "meta");
        const until = a.revert_at || a.next_run || a.lease_until;
        if (until) {
          const count = el("span", "countdown", left(until));
          count.dataset.until = String(until);
          meta.append(count, " · ");
        }
        if (a.revert_at) meta.append("then back to " + amount(a.revert_to, entry.spec));
        else if (a.next_run) meta.append("runs at " + time(a.next_run));
        li.append(meta);
        if (CANCELLABLE.has(a.state)) {
          const cancel = el("button", "cancel", "Cancel");
          cancel.type = "button";
          cancel.disabled = !canWrite();
          cancel.addEventListener("click", () => cancelAction(entry, a, cancel));
          li.append(cancel);
        }
        return li;
      })
    );
  }

  async function cancelAction(entry, a, button) {
    entry.error.textContent = "";
    entry.status.textContent = "";
    busy(button, true, "Cancelling…");
    const got = await send("DELETE", "/api/actions/" + encodeURIComponent(a.id));
    busy(button, false, "Cancel");
    if (got.status === 200) entry.status.textContent = "Cancelled " + a.id + "; the point reverts.";
    else entry.error.textContent = refusal(got, "cancelling");
    loadActions();
  }

  function controlActions(open) {
    openByPoint = new Map();
    for (const a of open) {
      const key = keyOf(a.device, a.point);
      if (!openByPoint.has(key)) openByPoint.set(key, []);
      openByPoint.get(key).push(a);
    }
    for (const entry of controlCards.values()) showOpen(entry);
  }

  function tickCountdowns() {
    for (const node of document.querySelectorAll("#control-points .countdown")) {
      node.textContent = left(Number(node.dataset.until));
    }
  }

  // ---- chart -----------------------------------------------------------------------------

  async function loadHistory() {
    try {
      history = await api("/api/history?minutes=60");
    } catch (err) {
      if (err instanceof AuthError) forget("That token was refused.");
      return;
    }
    drawChart();
  }

  function niceStep(range) {
    const raw = range / 4;
    const mag = 10 ** Math.floor(Math.log10(raw || 1));
    for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * mag) return m * mag;
    return 10 * mag;
  }

  function drawChart() {
    const chart = $("chart");
    const w = Math.max(200, chart.clientWidth || 600);
    const h = Math.max(120, chart.clientHeight || 240);
    chart.setAttribute("viewBox", "0 0 " + w + " " + h);
    const pad = { l: 52, r: 10, t: 10, b: 22 };
    const series = [];
    for (const [dev, data] of Object.entries((history && history.devices) || {})) {
      for (const [name, vals] of Object.entries(data.series)) series.push({ label: dev + " · " + name, t: data.t, v: vals });
    }
    const now = Date.now() / 1000;
    const x0 = now - 3600;
    let lo = 0;
    let hi = 0;
    for (const s of series) for (const v of s.v) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (hi - lo < 1) hi = lo + 1;
    const step = niceStep(hi - lo);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    const X = (t) => pad.l + ((t - x0) / 3600) * (w - pad.l - pad.r);
    const Y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (h - pad.t - pad.b);
    const nodes = [];
    for (let v = lo; v <= hi + step / 2; v += step) {
      nodes.push(svg("line", { class: "grid", x1: pad.l, x2: w - pad.r, y1: Y(v), y2: Y(v) }));
      const label = svg("text", { class: "axis", x: pad.l - 6, y: Y(v) + 4, "text-anchor": "end" });
      label.textContent = Math.abs(step) >= 1000 ? v / 1000 + " kW" : v + " W";
      nodes.push(label);
    }
    for (const [frac, text] of [[0, "-60 min"], [0.5, "-30 min"], [1, "now"]]) {
      const label = svg("text", {
        class: "axis",
        x: pad.l + frac * (w - pad.l - pad.r),
        y: h - 6,
        "text-anchor": frac === 0 ? "start" : frac === 1 ? "end" : "middle",
      });
      label.textContent = text;
      nodes.push(label);
    }
    const legend = [];
    series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      let d = "";
      let pen = false;
      let points = 0;
      s.t.forEach((t, k) => {
        const v = s.v[k];
        if (v === null || t < x0) { pen = false; return; } // a gap (offline, bad value) breaks the line
        d += (pen ? "L" : "M") + X(t).toFixed(1) + " " + Y(v).toFixed(1) + " ";
        pen = true;
        points++;
      });
      if (!points) return;
      nodes.push(svg("path", { class: "line series", d: d.trim(), stroke: color, "data-label": s.label }));
      if (points === 1) {
        // A lone sample draws no line: show it as a dot.
        const [, cx, cy] = d.trim().split(/[M ]/);
        nodes.push(svg("circle", { cx: cx, cy: cy, r: 3, fill: color }));
      }
      const li = el("li");
      const sw = el("span", "sw");
      sw.style.background = color;
      li.append(sw, s.label);
      legend.push(li);
    });
    if (!legend.length) {
      const empty = svg("text", { class: "empty", x: w / 2, y: h / 2, "text-anchor": "middle" });
      empty.textContent = "no power readings yet";
      nodes.push(empty);
    }
    chart.replaceChildren(...nodes);
    chart.dataset.series = String(legend.length);
    $("legend").replaceChildren(...legend);
  }

  // ---- start -----------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      token = $("token").value.trim();
      $("token").value = "";
      $("login-error").textContent = "";
      if (token) openDashboard();
    });
    $("logout").addEventListener("click", () => forget(""));
    $("control-auth").addEventListener("submit", useAdminToken);
    setInterval(tickCountdowns, 1000);
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(drawChart, 150);
    });
    if (token) openDashboard();
    else showLogin("");
  });
})();
