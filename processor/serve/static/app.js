"use strict";
// The axmon dashboard: plain DOM and inline SVG over /api/v1, no build step, no network beyond this server.
const $ = (sel) => document.querySelector(sel);
const state = { paused: false, cursor: null, timer: null };
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

async function loadActive() {
  const d = await api("/dashboard" + q());
  $("#active-count").textContent = "(" + d.activeWorkflows.length + ")";
  fill("#active", d.activeWorkflows.map((e) => el("tr", { "data-id": e.id }, td(link(e)), td(e.tenantId), td(e.workflowName || e.workflowId),
    td(e.status, e.status), td(age(e.startedAt), "num"), td(e.currentStep || "–"), td(num(e.tokensUsed), "num"), td(money(e.cost), "num"))));
  const h = d.systemHealth;
  const badge = $("#health");
  badge.textContent = "health: " + h.overall; badge.className = "badge " + h.overall;
  badge.title = h.components.map((c) => c.name + ": " + c.status + (c.reasons.length ? " (" + c.reasons.join("; ") + ")" : "")).join("\n");
  $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
  return d;
}

function filterParams() {
  const f = new FormData($("#filters"));
  const since = f.get("since");
  return { status: f.get("status"), workflow: f.get("workflow"), start: since ? new Date(since).getTime() : "" };
}
async function loadRecent(append = false) {
  const page = await api("/executions" + q({ ...filterParams(), limit: 25, cursor: append ? state.cursor : "" }));
  const rows = page.executions.map((e) => el("tr", { "data-id": e.id }, td(link(e)), td(e.tenantId), td(e.workflowName || e.workflowId),
    td(e.status, e.status), td(when(e.startedAt)), td(ms(e.duration), "num"), td(e.stepsCompleted + "/" + e.stepsTotal, "num"),
    td(num(e.tokensUsed), "num"), td(money(e.cost), "num")));
  if (append) $("#recent tbody").append(...rows); else fill("#recent", rows);
  state.cursor = page.nextCursor;
  $("#more").hidden = !page.nextCursor;
}

async function loadAlerts() {
  const f = new FormData($("#alert-filters"));
  const d = await api("/alerts" + q({ status: f.get("status"), severity: f.get("severity") }));
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
  setTimeout(loadAlerts, 1000);
}

function sparkline(points, label, fmt) {
  const box = el("div", { class: "chart" }, el("h3", {}, label));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 300 70"); svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1e-9, ...points.map((p) => p.v));
  const w = 300 / Math.max(1, points.length);
  points.forEach((p, i) => {
    const r = document.createElementNS(ns, "rect");
    const h = (p.v / max) * 64;
    r.setAttribute("x", i * w + 1); r.setAttribute("width", Math.max(1, w - 2)); r.setAttribute("y", 68 - h); r.setAttribute("height", h);
    r.setAttribute("fill", "#1565c0");
    const t = document.createElementNS(ns, "title"); t.textContent = new Date(p.t).toLocaleString() + ": " + fmt(p.v);
    r.append(t); svg.append(r);
  });
  box.append(svg);
  const table = el("table", { class: "muted" }, el("tr", {}, ...points.slice(-6).map((p) => el("td", {}, new Date(p.t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) + " " + fmt(p.v)))));
  box.append(el("details", {}, el("summary", {}, "as a table"), table));
  return box;
}
async function loadCharts() {
  const page = await api("/executions" + q({ limit: 500 }));
  const hours = new Map();
  for (const e of page.executions) {
    const h = Math.floor(e.startedAt / 3600000) * 3600000;
    const b = hours.get(h) || { n: 0, ok: 0, cost: 0, tokens: 0 };
    b.n += 1; b.ok += e.status === "completed" ? 1 : 0; b.cost += e.cost || 0; b.tokens += e.tokensUsed || 0;
    hours.set(h, b);
  }
  const series = [...hours.entries()].sort((a, b) => a[0] - b[0]);
  const agg = await api("/metrics/aggregation" + q({ metric_type: "workflow.execution.duration", start: 0 }));
  const charts = [
    sparkline(series.map(([t, b]) => ({ t, v: (100 * b.ok) / b.n })), "success rate per hour", (v) => v.toFixed(1) + " %"),
    sparkline(series.map(([t, b]) => ({ t, v: b.cost })), "cost per hour", money),
    sparkline(series.map(([t, b]) => ({ t, v: b.tokens })), "tokens per hour", num),
  ];
  const p = el("div", { class: "chart" }, el("h3", {}, "execution duration"),
    agg ? el("table", {}, el("tr", {}, el("th", {}, "p50"), el("th", {}, "p95"), el("th", {}, "p99"), el("th", {}, "count")),
      el("tr", {}, td(ms(Math.round(agg.p50)), "num"), td(ms(Math.round(agg.p95)), "num"), td(ms(Math.round(agg.p99)), "num"), td(num(agg.count), "num")))
      : el("p", { class: "muted" }, "no samples"));
  $("#charts").replaceChildren(...charts, p);
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
function schedule() {
  clearInterval(state.timer);
  state.timer = setInterval(() => { if (!state.paused) refresh().catch((err) => { $("#updated").textContent = "error: " + err.message; }); }, 3000);
}
$("#pause").onclick = () => { state.paused = !state.paused; $("#pause").textContent = state.paused ? "Resume" : "Pause"; };
$("#filters").onsubmit = (ev) => { ev.preventDefault(); loadRecent().catch((err) => alert(err.message)); };
$("#alert-filters").onchange = () => loadAlerts().catch((err) => alert(err.message));
$("#more").onclick = () => loadRecent(true);
for (const input of [tenantInput, keyInput]) input.onchange = () => {
  localStorage.setItem("axmon.tenant", tenantInput.value); localStorage.setItem("axmon.key", keyInput.value); route();
};
window.addEventListener("hashchange", route);
route(); schedule();
