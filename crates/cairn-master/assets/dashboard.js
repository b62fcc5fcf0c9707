// Cairn dashboard: polls /status every 2 s and renders it. No dependencies.
"use strict";

const $ = (id) => document.getElementById(id);

function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + u[i];
}

function ago(ms) {
  if (ms < 1000) return ms + " ms ago";
  if (ms < 120000) return (ms / 1000).toFixed(1) + " s ago";
  return Math.round(ms / 60000) + " min ago";
}

function duration(ms) {
  const s = Math.round(ms / 1000);
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function text(el, value) { el.textContent = value; }

function cell(tr, value, cls) {
  const td = document.createElement("td");
  if (value instanceof Node) td.appendChild(value); else td.textContent = value;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function capacityBar(s) {
  const wrap = document.createElement("div");
  const bar = document.createElement("div");
  bar.className = "bar";
  const fill = document.createElement("i");
  const pct = s.capacity_bytes ? (100 * s.used_bytes / s.capacity_bytes) : 0;
  fill.style.width = pct.toFixed(1) + "%";
  if (pct > 95) fill.className = "full"; else if (pct > 80) fill.className = "high";
  bar.appendChild(fill);
  wrap.appendChild(bar);
  const label = document.createElement("span");
  label.className = "muted";
  label.textContent = bytes(s.used_bytes) + " of " + bytes(s.capacity_bytes) + " (" + pct.toFixed(0) + "%)";
  wrap.appendChild(label);
  return wrap;
}

function renderServers(servers) {
  const body = $("servers").tBodies[0];
  body.replaceChildren();
  for (const s of servers) {
    const tr = document.createElement("tr");
    tr.className = "server " + s.state;
    tr.dataset.state = s.state;
    tr.dataset.addr = s.addr;
    cell(tr, s.addr);
    cell(tr, s.state, "state " + s.state);
    cell(tr, ago(s.last_heartbeat_ms_ago));
    cell(tr, capacityBar(s));
    cell(tr, bytes(s.free_bytes));
    cell(tr, String(s.replicas));
    cell(tr, String(s.active_requests || 0));
    if (s.http_addr) {
      const a = document.createElement("a");
      a.href = "http://" + s.http_addr + "/metrics";
      a.textContent = s.http_addr;
      cell(tr, a);
    } else cell(tr, "–");
    body.appendChild(tr);
  }
  const alive = servers.filter((s) => s.state === "alive").length;
  text($("server-count"), "(" + alive + " alive, " + (servers.length - alive) + " dead)");
}

function renderEvents(events) {
  const list = $("events");
  list.replaceChildren();
  for (const e of events.slice().reverse()) {
    const li = document.createElement("li");
    li.className = e.level;
    const t = document.createElement("time");
    t.textContent = new Date(e.unix_ms).toLocaleTimeString();
    const lvl = document.createElement("span");
    lvl.className = "lvl";
    lvl.textContent = e.level;
    const msg = document.createElement("span");
    msg.textContent = e.message;
    li.append(t, lvl, msg);
    list.appendChild(li);
  }
  if (!events.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "Nothing has happened yet.";
    list.appendChild(li);
  }
}

function renderRepair(s) {
  // Re-replication progress, when the master reports it.
  const keys = Object.keys(s).filter((k) => k.startsWith("replication_") || k.startsWith("repair_"));
  const parts = [];
  if (s.replication_bytes_left) parts.push(bytes(s.replication_bytes_left) + " left");
  if (s.replication_bytes_per_second) parts.push(bytes(s.replication_bytes_per_second) + "/s");
  if (s.replication_eta_ms) parts.push("ETA " + duration(s.replication_eta_ms));
  if (s.replication_in_flight) parts.push(s.replication_in_flight + " copies in flight");
  let line = parts.length ? "Re-replication: " + parts.join(" · ") : "";
  if (!line && s.chunks_under_goal > 0) line = "Re-replication pending for " + s.chunks_under_goal + " chunk(s).";
  if (!line && keys.length && s.chunks_under_goal === 0) line = "All chunks at goal.";
  text($("repair"), line);
}

function render(s) {
  const state = $("master-state");
  if (s.safe_mode) { state.textContent = "safe mode"; state.className = "badge warn"; }
  else if (s.chunks_lost > 0) { state.textContent = "data unavailable"; state.className = "badge bad"; }
  else if (s.chunks_under_goal > 0) { state.textContent = "degraded"; state.className = "badge warn"; }
  else { state.textContent = "healthy"; state.className = "badge ok"; }
  text($("meta"), "v" + s.version + " · up " + duration(s.uptime_ms));
  text($("files"), s.files);
  text($("directories"), s.directories);
  text($("bytes"), bytes(s.total_bytes));
  text($("chunks"), s.chunks);
  text($("at-goal"), s.chunks_at_goal);
  text($("under-goal"), s.chunks_under_goal);
  text($("over-goal"), s.chunks_over_goal);
  text($("lost"), s.chunks_lost);
  renderRepair(s);
  text($("m-state"), s.safe_mode ? "safe mode (waiting for chunk reports)" : "serving");
  text($("m-log"), "index " + s.oplog_index + ", " + bytes(s.oplog_bytes));
  text($("m-ckpt"), s.last_checkpoint_index ? "at index " + s.last_checkpoint_index : "none yet");
  text($("m-locks"), s.sessions + " sessions, " + s.locks_held + " locks held, " + s.lock_waiters + " waiting");
  text($("m-chunk"), bytes(s.chunk_size));
  renderServers(s.servers);
  renderEvents(s.events);
  text($("updated"), "updated " + new Date().toLocaleTimeString());
}

async function refresh() {
  try {
    const r = await fetch("/status", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    $("offline").classList.add("hidden");
  } catch (e) {
    $("offline").classList.remove("hidden");
  }
}

refresh();
setInterval(refresh, 2000);
