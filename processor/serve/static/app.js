"use strict";
// The axmon dashboard: plain DOM and inline SVG over /api/v1, no build step, no network beyond this server.
const $ = (sel) => document.querySelector(sel);
// mode: "connecting" | "stream" (live from /api/v1/stream) | "polling" (the stream failed FALLBACK times in a row) | "paused"
const state = { paused: false, cursor: null, mode: "connecting", source: null, lastId: null, failures: 0, retry: null,
  pollTimer: null, polls: 0, streamed: 0, generation: 0, chartsAt: 0, later: {}, events: [] };
window.axmon = state; // for a look from the console (and the browser test)
const FALLBACK = 3, POLL_MS = 3000, MAX_BACKOFF_MS = 30000, CHARTS_EVERY_MS = 30000;
const tenantInput = $("#tenant"), keyInput = $("#key");
tenantInput.value = localStorage.getItem("axmon.tenant") || "";
keyInput.value = localStorage.getItem("axmon.key") || "";

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (keyInput.value) headers.Authorization = "Bearer " + keyInput.value;
  const res = await fetch("/api/v1" + path, { ...options, headers });
  const body = await res.json();
  if (!res.ok) throw new Error(body.message || res.statusText);
  return body;
}
function q(params) {
  const p = new URLSearchParams();
  if (tenantInput.value) p.set("tenant", tenantInput.value);
  for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== null && v !== undefined) p.set(k, v);
  const s = p.toString();
  return s ? "?" + s : "";
}
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "onclick") node.onclick = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c === null || c === undefined ? "" : c);
  return node;
}
const num = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString());
const money = (v) => (v === null || v === undefined ? "–" : "$" + Number(v).toFixed(4));
const ms = (v) => (v === null || v === undefined ? "–" : v < 1000 ? v + " ms" : v < 60000 ? (v / 1000).toFixed(1) + " s"
  : v < 3600000 ? Math.floor(v / 60000) + " min" : (v / 3600000).toFixed(1) + " h");
const age = (t) => ms(Math.max(0, Date.now() - t));
const when = (t) => (t ? new Date(t).toLocaleString() : "–");
const td = (v, cls) => el("td", cls ? { class: cls } : {}, v);
const short = (id) => (id.length > 14 ? id.slice(0, 8) + "…" + id.slice(-4) : id);
const link = (e) => el("a", { href: "#/execution/" + encodeURIComponent(e.id), title: e.id }, short(e.id));
function fill(table, rows) { const body = $(table + " tbody"); body.replaceChildren(...rows); }

const activeRow = (e) => el("tr", { "data-id": e.id }, td(link(e)), td(e.tenantId), td(e.workflowName || e.workflowId),
  td(e.status, e.status), el("td", { class: "num age", "data-t": e.startedAt }, age(e.startedAt)), td(e.currentStep || "–"),
  td(num(e.tokensUsed), "num"), td(money(e.cost), "num"));
const recentRow = (e) => el("tr", { "data-id": e.id }, td(link(e)), td(e.tenantId), td(e.workflowName || e.workflowId),
  td(e.status, e.status), td(when(e.startedAt)), td(ms(e.duration), "num"), td(e.stepsCompleted + "/" + e.stepsTotal, "num"),
  td(num(e.tokensUsed), "num"), td(money(e.cost), "num"));
const isActive = (e) => e.status === "running" || e.status === "pending";
function countActive() { $("#active-count").textContent = "(" + $("#active tbody").rows.length + ")"; }
function stamp() { $("#updated").textContent = "updated " + new Date().toLocaleTimeString(); }

// A full load answers as of when it was asked: the stream's rows that arrived meanwhile are newer, so they go on top again.
function replaySince(n) { for (const ev of state.events) if (ev.n > n) applyExecution(ev.row); }
async function loadActive() {
  const since = state.streamed;
  const d = await api("/dashboard" + q());
  fill("#active", d.activeWorkflows.map(activeRow));
  replaySince(since);
  countActive();
  showHealth(d.systemHealth);
  stamp();
  return d;
}
function showHealth(h) {
  const badge = $("#health");
  badge.textContent = "health: " + h.overall; badge.className = "badge " + h.overall;
  badge.title = h.components.map((c) => c.name + ": " + c.status + (c.reasons.length ? " (" + c.reasons.join("; ") + ")" : "")).join("\n");
}
async function loadHealth() { showHealth(await api("/health")); }

function filterParams() {
  const f = new FormData($("#filters"));
  const since = f.get("since");
  return { status: f.get("status"), workflow: f.get("workflow"), start: since ? new Date(since).getTime() : "" };
}
async function loadRecent(append = false) {
  const since = state.streamed;
  const page = await api("/executions" + q({ ...filterParams(), limit: 25, cursor: append ? state.cursor : "" }));
  const rows = page.executions.map(recentRow);
  if (append) $("#recent tbody").append(...rows); else { fill("#recent", rows); replaySince(since); }
  state.cursor = page.nextCursor;
  $("#more").hidden = !page.nextCursor;
}

async function loadAlerts() {
  const f = new FormData($("#alert-filters"));
  const asked = (state.alertsAsked = (state.alertsAsked || 0) + 1);
  const d = await api("/alerts" + q({ status: f.get("status"), severity: f.get("severity") }));
  if (asked !== state.alertsAsked) return; // a later load is on its way: its answer is newer
  fill("#alerts", d.alerts.map((a) => {
    const subject = a.executionId ? "execution " + a.executionId : (a.tenantId || "–") + " " + (a.metricType || "");
    const ack = a.status === "firing" && a.kind === "threshold"
      ? el("button", { class: "ack", type: "button", onclick: () => ackAlert(a.id) }, "Ack") : "";
    return el("tr", { "data-id": a.id }, td(a.rule), td(a.severity, a.severity), td(a.status, a.status), td(subject),
      td(num(a.value), "num"), td(when(a.updatedAt)), td(ack));
  }));
}
async function ackAlert(id) {
  try { await api("/alerts/" + encodeURIComponent(id) + "/ack", { method: "POST", body: JSON.stringify({ by: "dashboard" }) }); }
  catch (err) { alert(err.message); }
  // the alert moves once the worker applied the ack and the sink wrote it: the stream (or polling) shows it
}

const SVG = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
const tick = (t, range) => new Date(t).toLocaleString([], range === "1h"
  ? { hour: "2-digit", minute: "2-digit" } : { month: "short", day: "numeric", hour: "2-digit" });
// A chart over the range: one line (or bars) per series, a gap where a bucket has no value; its table below.
function chart(title, data, series, fmt, kind = "line") {
  const W = 300, H = 90, top = 6, bottom = 14, left = 2;
  const pts = data.points, span = data.end - data.start;
  const values = series.flatMap((s) => pts.map((p) => p[s.key]).filter((v) => v !== null && v !== undefined));
  const max = Math.max(1e-9, ...values);
  const x = (t) => left + ((t - data.start + data.intervalMs / 2) / span) * (W - left);
  const y = (v) => top + (1 - v / max) * (H - top - bottom);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
    "aria-label": title + " over the last " + data.range + " (the table below has the values)" });
  svg.append(svgEl("line", { x1: 0, x2: W, y1: H - bottom, y2: H - bottom, class: "axis" }));
  svg.append(svgEl("text", { x: 2, y: H - 2, class: "tick" }, tick(data.start, data.range)));
  svg.append(svgEl("text", { x: W - 2, y: H - 2, class: "tick end" }, tick(data.end, data.range)));
  svg.append(svgEl("text", { x: 2, y: top + 4, class: "tick" }, values.length ? fmt(max) : "no data"));
  const bw = Math.max(1, ((W - left) * data.intervalMs) / span - 1);
  for (const s of series) {
    let d = "", pen = "M";
    for (const p of pts) {
      const v = p[s.key];
      if (v === null || v === undefined) { pen = "M"; continue; }
      if (kind === "bars") {
        if (v > 0) svg.append(svgEl("rect", { x: x(p.timestamp) - bw / 2, width: bw, y: y(v), height: H - bottom - y(v), class: "col " + s.cls }));
      } else { d += `${pen}${x(p.timestamp).toFixed(1)},${y(v).toFixed(1)} `; pen = "L"; }
      const dot = svgEl("circle", { cx: x(p.timestamp), cy: y(v), r: kind === "bars" ? 0 : 1.6, class: "dot " + s.cls });
      dot.append(svgEl("title", {}, tick(p.timestamp, "7d") + " " + s.label + ": " + fmt(v)));
      svg.append(dot);
    }
    if (kind === "line") svg.append(svgEl("path", { d: d.trim(), class: "line " + s.cls, "data-series": s.key }));
  }
  const legend = series.length > 1 ? el("div", { class: "legend" }, ...series.map((s) => el("span", { class: "key " + s.cls }, s.label))) : "";
  const rows = pts.filter((p) => series.some((s) => p[s.key] !== null && p[s.key] !== undefined && p[s.key] !== 0));
  const table = el("table", { class: "chart-table" },
    el("thead", {}, el("tr", {}, el("th", {}, "from"), ...series.map((s) => el("th", {}, s.label)))),
    el("tbody", {}, ...rows.map((p) => el("tr", {}, td(tick(p.timestamp, "7d")),
      ...series.map((s) => td(p[s.key] === null || p[s.key] === undefined ? "–" : fmt(p[s.key]), "num"))))));
  return el("div", { class: "chart", "data-chart": series.map((s) => s.key).join(" ") }, el("h3", {}, title), svg, legend,
    el("details", {}, el("summary", {}, "as a table (" + rows.length + " of " + pts.length + " buckets have data)"), table));
}
async function loadCharts() {
  const range = $("#range").value;
  const data = await api("/charts" + q({ range }));
  const per = { "1h": "5 min", "24h": "hour", "7d": "6 h" }[range];
  const round = (v) => ms(Math.round(v));
  $("#charts").replaceChildren(
    chart("success rate per " + per, data, [{ key: "successRate", label: "success", cls: "s0" }], (v) => v.toFixed(1) + " %"),
    chart("cost per " + per, data, [{ key: "cost", label: "cost", cls: "s0" }], money, "bars"),
    chart("tokens per " + per, data, [{ key: "tokensUsed", label: "tokens", cls: "s0" }], num, "bars"),
    chart("execution duration per " + per, data, [{ key: "p50", label: "p50", cls: "p50" }, { key: "p95", label: "p95", cls: "p95" },
      { key: "p99", label: "p99", cls: "p99" }], round),
  );
  state.chartsAt = Date.now();
}

async function showExecution(id) {
  const e = await api("/executions/" + encodeURIComponent(id));
  $("#detail-title").textContent = (e.workflowName || e.workflowId) + " · " + e.id;
  $("#detail-line").textContent = e.status + " · " + e.tenantId + " · " + ms(e.duration) + " · " + num(e.tokensUsed) + " tokens · " + money(e.cost)
    + (e.errorMessage ? " · " + e.errorMessage : "");
  const start = Math.min(e.startedAt, ...e.steps.map((s) => s.startedAt));
  const end = Math.max(e.completedAt || Date.now(), ...e.steps.map((s) => s.startedAt + (s.duration || 0)));
  const span = Math.max(1, end - start);
  $("#timeline").replaceChildren(...e.steps.map((s) => {
    const cls = s.status === "failed" ? "failed" : s.status === "running" ? "running" : s.retryCount > 0 ? "retried" : "completed";
    const bar = el("div", { class: "bar " + cls, "data-step": s.id, title: [s.stepName, s.status, "start " + when(s.startedAt), "duration " + ms(s.duration),
      "retries " + s.retryCount, "tokens " + num(s.tokensUsed), "cost " + money(s.cost), s.errorMessage || ""].filter(Boolean).join("\n") });
    bar.style.left = ((100 * (s.startedAt - start)) / span) + "%";
    bar.style.width = ((100 * (s.duration || (s.status === "running" ? end - s.startedAt : 0))) / span) + "%";
    return el("div", { class: "bar-row" }, el("span", { class: "bar-label" }, s.stepName || s.stepKey), el("div", { class: "bar-track" }, bar));
  }));
  fill("#steps", e.steps.map((s) => el("tr", {}, td(s.stepName || s.stepKey), td(s.status, s.status), td(when(s.startedAt)), td(ms(s.duration), "num"),
    td(s.retryCount, "num"), td(num(s.tokensUsed), "num"), td(money(s.cost), "num"), td(s.errorMessage || ""))));
  const stepNames = Object.fromEntries(e.steps.map((s) => [s.id, s.stepName || s.stepKey]));
  fill("#logs", (e.logs || []).map((r) => el("tr", { class: "log " + r.level }, td(when(r.timestamp)), td(r.level, r.level),
    td(stepNames[r.stepId] || r.stepId || ""), td(r.message + (r.attributes && Object.keys(r.attributes).length ? " " + JSON.stringify(r.attributes) : "")))));
}

async function route() {
  const m = location.hash.match(/^#\/execution\/(.+)$/);
  $("#home").hidden = !!m; $("#detail").hidden = !m;
  try { if (m) await showExecution(decodeURIComponent(m[1])); else await refresh(true); }
  catch (err) { $("#updated").textContent = "error: " + err.message; }
}
async function refresh(all = false) {
  if (!$("#detail").hidden) return showExecution(decodeURIComponent(location.hash.slice("#/execution/".length)));
  await Promise.all([loadActive(), loadAlerts(), all || !state.cursor ? loadRecent() : null, all ? loadCharts() : null]);
}
const report = (err) => { $("#updated").textContent = "error: " + err.message; };

// -- live: the stream, with backoff, Last-Event-ID resume and a polling fallback -------------------
function setMode(mode, note) {
  state.mode = mode;
  const badge = $("#live");
  badge.dataset.mode = mode;
  badge.className = "badge live " + mode;
  badge.textContent = { connecting: "live: connecting…", stream: "live", polling: "polling every 3 s", paused: "paused" }[mode];
  badge.title = note || { stream: "updates arrive from the server's event stream as they happen",
    polling: "the event stream failed " + FALLBACK + " times in a row: polling until it answers again" }[mode] || "";
}
function closeStream() {
  state.generation += 1; // events and errors of an older EventSource are ignored
  if (state.source) state.source.close();
  state.source = null;
  clearTimeout(state.retry);
}
async function connect() {
  closeStream();
  if (state.paused) return;
  const generation = state.generation;
  if (state.mode !== "polling") setMode("connecting");
  let grant;
  try { grant = await api("/stream/token" + q(), { method: "POST" }); }
  catch (err) { return generation === state.generation && streamFailed(err.message); }
  if (generation !== state.generation) return;
  // a new EventSource cannot send Last-Event-ID: the id seen last goes in the query (the browser's own retry sends the header)
  const p = new URLSearchParams({ token: grant.token });
  if (state.lastId !== null) p.set("last_event_id", state.lastId);
  const source = new EventSource("/api/v1/stream?" + p);
  state.source = source;
  const mine = (fn) => (ev) => { if (generation === state.generation) fn(ev); };
  source.onopen = mine(() => {
    const first = state.lastId === null;
    state.failures = 0;
    stopPolling();
    setMode("stream");
    if (first) refresh().catch(report); // what changed between the first load and the stream's start
  });
  source.addEventListener("execution", mine((ev) => {
    const row = JSON.parse(ev.data);
    state.lastId = ev.lastEventId; state.streamed += 1;
    state.events.push({ n: state.streamed, row });
    if (state.events.length > 500) state.events.shift();
    applyExecution(row);
  }));
  source.addEventListener("alert", mine((ev) => { state.lastId = ev.lastEventId; state.streamed += 1; later("alerts", 300, loadAlerts); }));
  source.addEventListener("reset", mine((ev) => { state.lastId = ev.lastEventId; refresh(true).catch(report); }));
  source.onerror = mine(() => streamFailed("the stream closed"));
}
function streamFailed(why) {
  closeStream();
  if (state.paused) return;
  state.failures += 1;
  if (state.failures >= FALLBACK) { setMode("polling", "the event stream failed " + state.failures + " times in a row (" + why + "): polling"); startPolling(); }
  else setMode("connecting", why + "; trying again");
  const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (state.failures - 1)) * (0.75 + Math.random() / 2);
  state.retry = setTimeout(connect, delay);
}
function startPolling() {
  if (state.pollTimer) return;
  state.pollTimer = setInterval(() => { if (!state.paused) { state.polls += 1; refresh().catch(report); } }, POLL_MS);
}
function stopPolling() { clearInterval(state.pollTimer); state.pollTimer = null; }
function later(name, delay, fn) { // at most one pending call of each kind
  if (state.later[name]) return;
  state.later[name] = setTimeout(() => { state.later[name] = null; fn().catch(report); }, delay);
}
function applyExecution(e) {
  if (tenantInput.value && e.tenantId !== tenantInput.value) return;
  const row = activeRow(e);
  row.dataset.via = "stream";
  const old = $("#active tbody").querySelector(`tr[data-id="${CSS.escape(e.id)}"]`);
  if (isActive(e)) { if (old) old.replaceWith(row); else $("#active tbody").prepend(row); } else if (old) old.remove();
  countActive();
  const recent = $("#recent tbody").querySelector(`tr[data-id="${CSS.escape(e.id)}"]`);
  const f = filterParams();
  if (recent) recent.replaceWith(recentRow(e));
  else if ((!f.status || f.status === e.status) && (!f.workflow || f.workflow === e.workflowId) && (!f.start || e.startedAt >= f.start)) {
    const fresh = recentRow(e); fresh.dataset.via = "stream"; $("#recent tbody").prepend(fresh);
  }
  const shown = location.hash.match(/^#\/execution\/(.+)$/);
  if (shown && decodeURIComponent(shown[1]) === e.id) later("detail", 200, () => showExecution(e.id));
  if (Date.now() - state.chartsAt > CHARTS_EVERY_MS) later("charts", 1000, loadCharts);
  stamp();
}
function ticking() { // ages move on between events; health now and then
  for (const cell of document.querySelectorAll("#active td.age")) cell.textContent = age(Number(cell.dataset.t));
}
setInterval(ticking, 1000);
setInterval(() => { if (!state.paused && state.mode === "stream") loadHealth().catch(report); }, 15000);

$("#pause").onclick = () => {
  state.paused = !state.paused;
  $("#pause").textContent = state.paused ? "Resume" : "Pause";
  if (state.paused) { closeStream(); stopPolling(); setMode("paused"); }
  else { state.failures = 0; setMode("connecting"); connect(); } // resumes after the last event seen, or resets
};
$("#filters").onsubmit = (ev) => { ev.preventDefault(); loadRecent().catch((err) => alert(err.message)); };
$("#alert-filters").onchange = () => loadAlerts().catch((err) => alert(err.message));
$("#range").onchange = () => loadCharts().catch(report);
$("#more").onclick = () => loadRecent(true);
for (const input of [tenantInput, keyInput]) input.onchange = () => {
  localStorage.setItem("axmon.tenant", tenantInput.value); localStorage.setItem("axmon.key", keyInput.value);
  state.lastId = null; state.failures = 0; route(); connect(); // a new scope: a new token, from now
};
window.addEventListener("hashchange", route);
setMode("connecting");
route(); connect();
