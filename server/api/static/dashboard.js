// Ohm dashboard: live frames over a WebSocket (1 Hz), the power history as hand-drawn SVG, actions and
// notifications fetched from the REST API when a frame says they changed. No library, no build step.
// Every text from the gateway goes in with textContent, never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "ohm.token";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const FIRST_POINTS = ["pv.power_w", "inverter.power_w", "grid.power_w", "battery.power_w", "battery.soc_pct"];
  const $ = (id) => document.getElementById(id);

  let token = localStorage.getItem(TOKEN_KEY) || "";
  let ws = null;
  let attempt = 0; // reconnect attempts since the last good frame (for the backoff)
  let retryTimer = null;
  let watchdog = null;
  let lastFrameAt = 0;
  let everLive = false; // some frame arrived: old values are on screen
  let interval = 1;
  let seen = { actions: null, notes: null };
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
    localStorage.removeItem(TOKEN_KEY);
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
    seen = { actions: null, notes: null };
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
    renderOpenActions([...(data.active || []), ...(data.scheduled || [])]);
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
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(drawChart, 150);
    });
    if (token) openDashboard();
    else showLogin("");
  });
})();
