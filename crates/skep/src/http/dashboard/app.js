// The skep dashboard: asks for an API token, follows `GET /api/events`
// (read with fetch, since EventSource cannot send the Authorization header)
// and drives the job and swarm routes. Plain ES2020, no build step.
//
// Stable hooks for tests and scripts: rows carry data-job / data-service /
// data-node; cells and controls carry data-role / data-action.
"use strict";

const TOKEN_KEY = "skep.token";
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
// NB: the server sends a keep-alive comment every 15 s; silence for longer
// than this means the connection is dead even if the socket is not closed.
const STALL_MS = 45000;
const MAX_MESSAGES = 5;
const INFO_MESSAGE_MS = 6000;

const state = {
  token: null,
  jobs: [],
  nodesById: new Map(),
  stream: { abort: null, timer: null, backoff: BACKOFF_MIN_MS, stall: null },
  workersTimer: null,
};

// ---------------------------------------------------------------- helpers

const $ = (sel, root = document) => root.querySelector(sel);

/** Builds an element; attributes starting with "on" become listeners. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function setText(el, text) {
  const s = String(text);
  if (el.textContent !== s) el.textContent = s;
}

function setAttr(el, name, value) {
  const s = String(value);
  if (el.getAttribute(name) !== s) el.setAttribute(name, s);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

function bytes(n) {
  if (typeof n !== "number" || n <= 0) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i >= 3 ? 1 : 0)} ${units[i]}`;
}

function rate(r) {
  if (!r) return "0";
  return r < 10 ? r.toFixed(2) : r.toFixed(1);
}

/** A badge tone for any status word the API uses. */
function tone(word) {
  switch (String(word).toLowerCase()) {
    case "healthy": case "ready": case "active": case "succeeded": case "live": return "ok";
    case "running": return "info";
    case "degraded": case "pause": case "suspended": case "pending": case "drain": return "warn";
    case "unhealthy": case "down": case "failed": case "disconnected": case "deleting": return "bad";
    default: return "neutral";
  }
}

function badge(el, word, label = word) {
  setText(el, label);
  setAttr(el, "data-tone", tone(word));
}

// --------------------------------------------------------------- messages

/** Shows a dismissable message; errors stay until dismissed. */
function notify(kind, text) {
  const box = $("#messages");
  for (const old of box.querySelectorAll(".message")) {
    if (old.dataset.text === text) old.remove();
  }
  const msg = h("div", {
    class: `message message-${kind}`,
    role: kind === "error" ? "alert" : "status",
    "data-kind": kind,
    "data-text": text,
  });
  msg.append(
    h("span", { class: "message-text" }, text),
    h("button", {
      type: "button", class: "message-close", "aria-label": "Dismiss message",
      onclick: () => msg.remove(),
    }, "×"),
  );
  box.append(msg);
  while (box.children.length > MAX_MESSAGES) box.firstElementChild.remove();
  if (kind !== "error") setTimeout(() => msg.remove(), INFO_MESSAGE_MS);
}

// -------------------------------------------------------------------- API

class ApiFailure extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Calls the API; resolves to `data`, rejects with an ApiFailure. */
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json" };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiFailure(0, `cannot reach the controller (${e.message})`);
  }
  let answer = null;
  try { answer = await res.json(); } catch { /* not JSON: described below */ }
  if (!res.ok || !answer || answer.success !== true) {
    const text = (answer && answer.error) || `${res.status} ${res.statusText || "error"}`;
    throw new ApiFailure(res.status, text);
  }
  return answer.data;
}

function explain(what, err) {
  switch (err.status) {
    case 401:
      return `${what}: the token was refused (401: ${err.message}). Sign in again.`;
    case 403:
      return `${what}: not allowed (403). This token can look but not change jobs or the swarm; `
        + `sign in with an admin token. (${err.message})`;
    case 0:
      return `${what}: ${err.message}.`;
    default:
      return `${what} failed (${err.status}): ${err.message}`;
  }
}

/** Runs one user action; reports its outcome in the message area. */
async function act(button, what, call, done) {
  if (button) button.disabled = true;
  try {
    await call();
    if (done) notify("info", done);
    return true;
  } catch (err) {
    notify("error", explain(what, err));
    if (err.status === 401) signOut();
    return false;
  } finally {
    if (button) button.disabled = false;
  }
}

// ----------------------------------------------------------------- stream

function setConnection(kind, detail) {
  const el = $("#connection");
  const labels = {
    idle: "Not connected",
    connecting: "Connecting…",
    live: "Live",
    reconnecting: `Reconnecting in ${Math.round((detail || 0) / 1000)} s…`,
  };
  el.dataset.state = kind;
  setText(el, labels[kind]);
}

function markUpdated() {
  setText($("#last-update"), `Last update ${new Date().toLocaleTimeString()}`);
}

function stopStream() {
  const s = state.stream;
  if (s.abort) s.abort.abort();
  clearTimeout(s.timer);
  clearTimeout(s.stall);
  s.abort = null;
  s.backoff = BACKOFF_MIN_MS;
}

/** Connects to /api/events and reads it until it ends, then reconnects. */
async function follow() {
  const s = state.stream;
  const ctl = new AbortController();
  s.abort = ctl;
  setConnection("connecting");
  try {
    const res = await fetch("/api/events", {
      headers: { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" },
      cache: "no-store",
      signal: ctl.signal,
    });
    if (res.status === 401 || res.status === 403) {
      let text = `${res.status}`;
      try { text = (await res.json()).error || text; } catch { /* keep the status */ }
      notify("error", `Live updates: the token was refused (${res.status}: ${text}). Sign in again.`);
      signOut();
      return;
    }
    if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
    setConnection("live");
    await readEvents(res.body, ctl, onEvent);
  } catch (err) {
    if (!ctl.signal.aborted) console.warn("event stream:", err);
  }
  clearTimeout(s.stall);
  if (s.abort !== ctl || (ctl.signal.aborted && !ctl.stalled)) return;
  const wait = s.backoff;
  s.backoff = Math.min(s.backoff * 2, BACKOFF_MAX_MS);
  setConnection("reconnecting", wait);
  s.timer = setTimeout(follow, wait);
}

/**
 * Parses a text/event-stream body (WHATWG rules: `event:`/`data:` fields,
 * `:` comments, a blank line ends an event) and calls `dispatch(name, data)`
 * with each event's JSON data. Resolves when the body ends.
 */
async function readEvents(body, ctl, dispatch) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const alive = () => {
    clearTimeout(state.stream.stall);
    state.stream.stall = setTimeout(() => { ctl.stalled = true; ctl.abort(); }, STALL_MS);
  };
  let buf = "";
  let name = "";
  let data = [];
  alive();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    alive();
    buf += decoder.decode(value, { stream: true });
    for (;;) {
      const i = buf.search(/[\r\n]/);
      // NB: a lone "\r" at the end may be the first half of "\r\n".
      if (i < 0 || (buf[i] === "\r" && i === buf.length - 1)) break;
      const line = buf.slice(0, i);
      buf = buf.slice(buf[i] === "\r" && buf[i + 1] === "\n" ? i + 2 : i + 1);
      if (line === "") {
        if (data.length) {
          let parsed;
          try { parsed = JSON.parse(data.join("\n")); } catch { parsed = undefined; }
          if (parsed !== undefined) dispatch(name || "message", parsed);
        }
        name = "";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const c = line.indexOf(":");
      const field = c < 0 ? line : line.slice(0, c);
      let val = c < 0 ? "" : line.slice(c + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "event") name = val;
      else if (field === "data") data.push(val);
    }
  }
}

function onEvent(name, data) {
  state.stream.backoff = BACKOFF_MIN_MS;
  switch (name) {
    case "jobs":
      state.jobs = Array.isArray(data) ? data : [];
      renderJobs();
      break;
    case "swarm":
      renderSwarm(data || {});
      renderJobs();
      break;
    case "error":
      notify("error", `The controller reports: ${data && data.error ? data.error : "an unknown error"}`);
      break;
    default:
      return;
  }
  markUpdated();
}

// ------------------------------------------------------------------- rows

/**
 * Brings `tbody`'s rows in line with `items`, keyed by `attr` (a data-*
 * name): rows are kept and updated in place, so input focus and typed
 * values survive an update.
 */
function syncRows(tbody, items, attr, key, create, update) {
  const existing = new Map();
  for (const row of tbody.rows) existing.set(row.getAttribute(`data-${attr}`), row);
  let prev = null;
  for (const item of items) {
    const k = key(item);
    let row = existing.get(k);
    if (row) existing.delete(k);
    else { row = create(item); row.setAttribute(`data-${attr}`, k); }
    update(row, item);
    const want = prev ? prev.nextElementSibling : tbody.firstElementChild;
    if (row !== want) tbody.insertBefore(row, want);
    prev = row;
  }
  for (const row of existing.values()) row.remove();
}

const part = (row, role) => row.querySelector(`[data-role="${role}"]`);

function finished(job) {
  return job.phase === "Succeeded" || job.phase === "Failed";
}

// ------------------------------------------------------------------- jobs

function createJobRow(job) {
  const name = job.name;
  const bar = h("div", {
    class: "progress", role: "progressbar", "data-role": "progress",
    "aria-label": `Progress of ${name}`, "aria-valuemin": 0,
  }, h("span", { class: "progress-ok" }), h("span", { class: "progress-bad" }));
  return h("tr", {},
    h("th", { scope: "row" },
      h("div", { class: "name" }, name),
      h("div", { class: "sub", "data-role": "pool" })),
    h("td", {}, h("span", { class: "badge", "data-role": "phase" })),
    h("td", {}, bar, h("div", { class: "sub", "data-role": "progress-text" })),
    h("td", { class: "num", "data-role": "rate" }),
    h("td", { class: "num", "data-role": "eta" }),
    h("td", { class: "num", "data-role": "replicas" }),
    h("td", {}, h("ul", { class: "chips", "data-role": "nodes", "aria-label": `Nodes used by ${name}` })),
    h("td", {}, h("ul", { class: "chips", "data-role": "failures", "aria-label": `Failures of ${name} by reason` })),
    h("td", { class: "actions" },
      h("button", {
        type: "button", class: "btn btn-small", "data-action": "suspend",
        onclick: (e) => toggleSuspend(e.currentTarget, name),
      }, "Suspend"),
      h("button", {
        type: "button", class: "btn btn-small", "data-action": "retry",
        "aria-label": `Retry the failed files of ${name}`,
        onclick: (e) => act(e.currentTarget, `Retry ${name}`,
          () => api("POST", `/api/jobs/${encodeURIComponent(name)}/retry`),
          `Retrying the failed files of ${name}.`),
        title: "Run the failed files again",
      }, "Retry"),
      h("button", {
        type: "button", class: "btn btn-small btn-danger", "data-action": "delete",
        "aria-label": `Delete ${name}`,
        onclick: (e) => deleteJob(e.currentTarget, name),
      }, "Delete")));
}

function updateJobRow(row, job) {
  const f = job.files || {};
  const total = f.total || 0;
  const ok = f.succeeded || 0;
  const bad = f.failed || 0;
  const done = ok + bad;
  const pct = (n) => (total > 0 ? `${(100 * n) / total}%` : "0%");

  setText(part(row, "pool"), `pool ${job.pool}`);
  const phase = part(row, "phase");
  if (job.deleting) badge(phase, "deleting", "Deleting");
  else badge(phase, job.phase, job.suspend && !finished(job) && job.phase !== "Suspended" ? "Suspending" : job.phase);
  setAttr(row, "data-phase", job.phase);

  const bar = part(row, "progress");
  setAttr(bar, "aria-valuemax", total);
  setAttr(bar, "aria-valuenow", done);
  setAttr(bar, "aria-valuetext", `${done} of ${total} files finished, ${bad} failed`);
  bar.children[0].style.width = pct(ok);
  bar.children[1].style.width = pct(bad);
  const text = part(row, "progress-text");
  setText(text, `${done} / ${total}${bad ? ` · ${bad} failed` : ""}`);
  const pg = job.pages || {};
  setAttr(text, "title", `${ok} succeeded, ${bad} failed, ${f.dispatched || 0} in flight, ${f.pending || 0} pending; ` +
    `${pg.done || 0} of ${pg.total || 0} pages done`);

  setText(part(row, "rate"), finished(job) ? "–" : rate(job.filesPerSecond));
  let eta = duration(job.etaSeconds);
  if (finished(job) && job.startTime && job.completionTime) {
    eta = `took ${duration((Date.parse(job.completionTime) - Date.parse(job.startTime)) / 1000)}`;
  }
  setText(part(row, "eta"), eta);
  const r = job.replicas || {};
  setText(part(row, "replicas"), `${r.running || 0} / ${r.desired || 0}`);

  const nodes = part(row, "nodes");
  const used = (job.nodesUsed || []).map((n) => {
    const node = state.nodesById.get(n);
    return { name: node ? node.hostname : n, tasks: node ? node.tasksRunning : null };
  });
  const usedKey = JSON.stringify(used);
  if (nodes.dataset.value !== usedKey) {
    nodes.dataset.value = usedKey;
    nodes.replaceChildren(...used.map(({ name, tasks }) => {
      const hasTasks = typeof tasks === "number";
      return h("li", { class: "chip", title: hasTasks ? `${tasks} tasks running on ${name}` : name },
        name, hasTasks ? h("span", { class: "chip-count", "aria-label": `${tasks} tasks` }, tasks) : null);
    }));
  }

  const reasons = Object.entries(job.failuresByReason || {}).filter(([, n]) => n > 0);
  const failures = part(row, "failures");
  const reasonsKey = JSON.stringify(reasons);
  if (failures.dataset.value !== reasonsKey) {
    failures.dataset.value = reasonsKey;
    failures.replaceChildren(...reasons.map(([k, n]) => h("li", { class: "chip chip-bad" }, `${k}: ${n}`)));
  }

  const suspend = row.querySelector('[data-action="suspend"]');
  const resume = job.suspend;
  setText(suspend, resume ? "Resume" : "Suspend");
  suspend.dataset.action = resume ? "resume" : "suspend";
  setAttr(suspend, "aria-label", `${resume ? "Resume" : "Suspend"} ${job.name}`);
  suspend.disabled = finished(job) || job.deleting;
  row.querySelector('[data-action="retry"]').disabled = bad === 0 || job.deleting;
  row.querySelector('[data-action="delete"]').disabled = job.deleting;
}

function toggleSuspend(button, name) {
  const verb = button.dataset.action === "resume" ? "resume" : "suspend";
  const label = verb === "resume" ? "Resume" : "Suspend";
  act(button, `${label} ${name}`,
    () => api("POST", `/api/jobs/${encodeURIComponent(name)}/${verb}`),
    `${name}: ${verb === "resume" ? "resumed" : "suspended"}.`);
}

function deleteJob(button, name) {
  if (!window.confirm(`Delete job ${name}? Its workers are scaled back and its queued files dropped.`)) return;
  act(button, `Delete ${name}`,
    () => api("DELETE", `/api/jobs/${encodeURIComponent(name)}`),
    `${name}: deleted.`);
}

function renderJobs() {
  const jobs = state.jobs;
  syncRows($("#jobs tbody"), jobs, "job", (j) => j.name, createJobRow, updateJobRow);
  $("#jobs-empty").hidden = jobs.length > 0;
  setText($("#jobs-count"), jobs.length ? jobs.length : "");
  const active = jobs.filter((j) => !finished(j));
  setText($("#stat-jobs"), `${active.length} of ${jobs.length}`);
  const total = active.reduce((sum, j) => sum + (j.filesPerSecond || 0), 0);
  setText($("#stat-rate"), `${rate(total)} files/s`);
  // NB: `replicas.running` is the pool's, shared by every job on it.
  const pools = new Map();
  for (const j of jobs) pools.set(j.pool, Math.max(pools.get(j.pool) || 0, (j.replicas || {}).running || 0));
  setText($("#stat-workers"), [...pools.values()].reduce((a, b) => a + b, 0));
}

// ------------------------------------------------------------------ swarm

function createServiceRow(svc) {
  const name = svc.name;
  const id = `replicas-${name}`;
  const input = h("input", {
    id, type: "number", min: 0, max: 1000, step: 1, inputmode: "numeric", required: true,
    class: "input-small", "data-role": "replicas-input",
    oninput: (e) => { e.currentTarget.dataset.dirty = "1"; },
  });
  const form = h("form", {
    class: "scale", "data-role": "scale-form",
    onsubmit: (e) => { e.preventDefault(); scaleService(name, input, form.querySelector("button")); },
  },
  h("label", { class: "visually-hidden", for: id }, `Replicas of ${name}`),
  input,
  h("button", { type: "submit", class: "btn btn-small", "data-action": "scale" }, "Scale"));
  return h("tr", {},
    h("th", { scope: "row" },
      h("div", { class: "name" }, name),
      h("div", { class: "sub", "data-role": "stack" })),
    h("td", {}, h("code", { class: "image", "data-role": "image" })),
    h("td", { "data-role": "mode" }),
    h("td", { class: "num", "data-role": "replicas" }),
    h("td", { class: "actions" }, form, h("span", { class: "muted", "data-role": "global" }, "one per node")));
}

function updateServiceRow(row, svc) {
  const r = svc.replicas || {};
  const desired = r.desired === null || r.desired === undefined ? null : r.desired;
  setText(part(row, "stack"), svc.stack ? `stack ${svc.stack}` : "");
  const image = part(row, "image");
  setText(image, svc.image || "");
  setAttr(image, "title", svc.image || "");
  setText(part(row, "mode"), svc.mode);
  const cell = part(row, "replicas");
  setText(cell, desired === null ? `${r.running || 0}` : `${r.running || 0} / ${desired}`);
  setAttr(cell, "data-running", r.running || 0);
  setAttr(cell, "data-desired", desired === null ? "" : desired);
  const global = svc.mode === "global";
  part(row, "scale-form").hidden = global;
  part(row, "global").hidden = !global;
  const input = part(row, "replicas-input");
  if (!input.dataset.dirty && document.activeElement !== input && desired !== null) {
    input.value = String(desired);
  }
}

async function scaleService(name, input, button) {
  const n = Number(input.value);
  if (!Number.isInteger(n) || n < 0) {
    notify("error", `Scale ${name}: the replica count must be a whole number ≥ 0.`);
    return;
  }
  const done = await act(button, `Scale ${name}`,
    () => api("POST", `/api/swarm/services/${encodeURIComponent(name)}/scale`, { replicas: n }),
    `${name}: scaling to ${n} replica${n === 1 ? "" : "s"}.`);
  if (done) delete input.dataset.dirty;
}

function createNodeRow() {
  return h("tr", {},
    h("th", { scope: "row" },
      h("div", { class: "name" }, h("span", { "data-role": "hostname" }),
        h("span", { class: "badge", "data-tone": "info", "data-role": "leader", hidden: true }, "leader")),
      h("div", { class: "sub", "data-role": "addr" })),
    h("td", { "data-role": "role" }),
    h("td", {}, h("span", { class: "badge", "data-role": "state" })),
    h("td", {}, h("span", { class: "badge", "data-role": "availability" })),
    h("td", { class: "num", "data-role": "cpus" }),
    h("td", { class: "num", "data-role": "memory" }),
    h("td", { class: "num", "data-role": "tasks" }),
    h("td", { class: "actions" },
      h("button", {
        type: "button", class: "btn btn-small", "data-action": "drain",
        onclick: (e) => {
          const row = e.currentTarget.closest("tr");
          setAvailability(e.currentTarget, row.dataset.id, row.dataset.node);
        },
      }, "Drain")));
}

function updateNodeRow(row, node) {
  row.dataset.id = node.id;
  setText(part(row, "hostname"), node.hostname);
  part(row, "leader").hidden = !node.leader;
  setText(part(row, "addr"), node.addr || "");
  setText(part(row, "role"), node.role);
  badge(part(row, "state"), node.state);
  badge(part(row, "availability"), node.availability);
  setText(part(row, "cpus"), node.cpus ?? "–");
  setText(part(row, "memory"), bytes(node.memoryBytes));
  setText(part(row, "tasks"), node.tasksRunning ?? "–");
  const button = row.querySelector(".actions button");
  const drained = node.availability === "drain";
  button.dataset.action = drained ? "activate" : "drain";
  setText(button, drained ? "Restore" : "Drain");
  setAttr(button, "aria-label", `${drained ? "Restore" : "Drain"} node ${node.hostname}`);
}

function setAvailability(button, id, hostname) {
  const drain = button.dataset.action === "drain";
  if (drain && !window.confirm(`Drain node ${hostname}? Its tasks move to other nodes.`)) return;
  const availability = drain ? "drain" : "active";
  act(button, `${drain ? "Drain" : "Restore"} ${hostname}`,
    () => api("PUT", `/api/swarm/nodes/${encodeURIComponent(id)}/availability`, { availability }),
    `${hostname}: ${drain ? "draining" : "active again"}.`);
}

function renderHealth(health) {
  const status = $("#health-status");
  const stat = $("#stat-health");
  if (!health) {
    badge(status, "unknown", "unknown");
    setText(stat, "–");
    setText($("#health-rate"), "");
    $("#health-services").replaceChildren();
    $("#health-nodes").replaceChildren();
    return;
  }
  badge(status, health.status);
  badge(stat, health.status);
  setText($("#health-rate"), typeof health.taskSuccessRate === "number"
    ? `Task success rate ${(100 * health.taskSuccessRate).toFixed(1)} %` : "Task success rate –");
  const chip = (label, word, detail) => h("li", { class: "chip", "data-tone": tone(word) },
    h("span", { class: "dot", "aria-hidden": "true" }), `${label}: ${word}${detail ? ` (${detail})` : ""}`);
  $("#health-services").replaceChildren(...(health.services || []).map((s) =>
    chip(s.name, s.status, s.desired === null || s.desired === undefined ? `${s.running}` : `${s.running}/${s.desired}`)));
  $("#health-nodes").replaceChildren(...(health.nodes || []).map((n) =>
    chip(n.hostname, n.status, n.availability !== "active" ? n.availability : "")));
}

function renderSwarm(snap) {
  const err = $("#swarm-error");
  if (snap.error) {
    setText(err, `Swarm unavailable: ${snap.error}`);
    err.hidden = false;
  } else {
    err.hidden = true;
  }
  const services = snap.services || [];
  const nodes = snap.nodes || [];
  state.nodesById = new Map(nodes.flatMap((n) => [[n.id, n], [n.hostname, n]]));
  syncRows($("#services tbody"), services, "service", (s) => s.name, createServiceRow, updateServiceRow);
  syncRows($("#nodes tbody"), nodes, "node", (n) => n.hostname, createNodeRow, updateNodeRow);
  $("#services-empty").hidden = services.length > 0;
  $("#nodes-empty").hidden = nodes.length > 0;
  setText($("#services-empty"), snap.error ? "Not available." : "No services.");
  setText($("#nodes-empty"), snap.error ? "Not available." : "No nodes.");
  setText($("#services-count"), services.length ? services.length : "");
  setText($("#nodes-count"), nodes.length ? nodes.length : "");
  renderHealth(snap.error ? null : snap.health);
}

// ---------------------------------------------------------------- workers

/** How often the workers table is read (it is not on the event stream). */
const WORKERS_EVERY_MS = 5000;

function createWorkerRow() {
  return h("tr", {},
    h("th", { scope: "row" },
      h("div", { class: "name" }, h("span", { "data-role": "id" }),
        h("span", { class: "badge", "data-tone": "warn", "data-role": "stale", hidden: true }, "stale")),
      h("div", { class: "sub", "data-role": "node" })),
    h("td", { "data-role": "pool" }),
    h("td", { class: "num", "data-role": "slots" }),
    h("td", { class: "num", "data-role": "reading" }),
    h("td", { class: "num", "data-role": "done" }),
    h("td", { class: "num", "data-role": "failed" }),
    h("td", { "data-role": "seen" }));
}

function updateWorkerRow(row, w) {
  setText(part(row, "id"), w.id);
  part(row, "stale").hidden = !w.stale;
  setText(part(row, "node"), `${w.node}${w.version ? ` · v${w.version}` : ""}`);
  setText(part(row, "pool"), w.pool);
  setText(part(row, "slots"), w.slots);
  setText(part(row, "reading"), w.inFlight ?? 0);
  setText(part(row, "done"), w.succeeded ?? 0);
  setText(part(row, "failed"), w.failed ?? 0);
  const ago = Math.max(0, (Date.now() - w.lastSeenMs) / 1000);
  setText(part(row, "seen"), ago < 2 ? "just now" : `${duration(ago)} ago`);
}

function renderWorkers(list) {
  const workers = Array.isArray(list) ? list : [];
  syncRows($("#workers tbody"), workers, "worker", (w) => w.id, createWorkerRow, updateWorkerRow);
  $("#workers-empty").hidden = workers.length > 0;
  setText($("#workers-count"), workers.length ? workers.length : "");
}

async function pollWorkers() {
  try {
    renderWorkers(await api("GET", "/api/workers"));
  } catch {
    // NB: the next poll tries again; the connection line shows outages.
  }
}

function stopWorkers() {
  if (state.workersTimer) clearInterval(state.workersTimer);
  state.workersTimer = null;
}

// ------------------------------------------------------------------- auth

function showSignedIn(signedIn) {
  $("#sign-in").hidden = signedIn;
  $("#dashboard").hidden = !signedIn;
  $("#sign-out").hidden = !signedIn;
}

function start() {
  showSignedIn(true);
  stopStream();
  follow();
  stopWorkers();
  pollWorkers();
  state.workersTimer = setInterval(pollWorkers, WORKERS_EVERY_MS);
}

function signOut() {
  stopStream();
  stopWorkers();
  state.token = null;
  state.jobs = [];
  sessionStorage.removeItem(TOKEN_KEY);
  for (const body of document.querySelectorAll("table tbody")) body.replaceChildren();
  renderJobs();
  renderSwarm({});
  renderWorkers([]);
  setConnection("idle");
  setText($("#last-update"), "No update yet");
  showSignedIn(false);
  $("#token").value = "";
  $("#token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const input = $("#token");
  const token = input.value.trim();
  if (!token) return;
  state.token = token;
  const button = event.currentTarget.querySelector("button");
  button.disabled = true;
  try {
    await api("GET", "/api/jobs");
    sessionStorage.setItem(TOKEN_KEY, token);
    input.value = "";
    for (const m of document.querySelectorAll(".message")) m.remove();
    start();
  } catch (err) {
    state.token = null;
    notify("error", explain("Sign in", err));
  } finally {
    button.disabled = false;
  }
}

function init() {
  $("#sign-in-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", () => {
    signOut();
    notify("info", "Signed out.");
  });
  state.token = sessionStorage.getItem(TOKEN_KEY);
  if (state.token) start();
  else signOut();
}

document.addEventListener("DOMContentLoaded", init);
