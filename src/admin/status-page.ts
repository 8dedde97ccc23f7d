/**
 * The status page (`GET /` on the admin listener): what a person reads at a glance.
 *
 * Owns: the page's HTML and script, both static (no template, nothing from the request
 * in them), served with a Content-Security-Policy that allows only this origin. The script
 * reads `/status` every 5 s and fills the page: overall state, hit rate per tier over the
 * last 1 / 5 / 15 minutes, the share of validations that did not need Keystone, each
 * Keystone endpoint's breaker, degraded mode, the key ring and whether it lags the
 * master's (with since when), the revocation feed, the drill; with `workers` > 1, each
 * worker (pid, state, replacements), the rest being one worker's view.
 * Every figure has an id, so tests (and scripts) can read it; `body[data-loaded]` is set
 * once the first status is shown.
 */
import type { ServerResponse } from "node:http";

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>keystone-edge status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2430; }
  h1 { font-size: 1.3rem; margin: 0 0 1rem; }
  h2 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
  table { border-collapse: collapse; }
  th, td { padding: .25rem .8rem; border-bottom: 1px solid #d8dde6; text-align: right; }
  th:first-child, td:first-child { text-align: left; }
  .badge { display: inline-block; padding: .1rem .6rem; border-radius: .8rem; font-weight: 600; }
  .ok { background: #d9f2df; color: #145c26; }
  .degraded { background: #fde9c8; color: #7a4a00; }
  .draining, .open { background: #f9d7d7; color: #7d1717; }
  .closed { color: #145c26; }
  .half-open { color: #7a4a00; }
  #error { color: #7d1717; }
</style>
</head>
<body>
<h1>keystone-edge <span id="status" class="badge">…</span></h1>
<p>Up <span id="uptime">…</span>. Degraded mode: <span id="degraded">…</span>. Drill: <span id="drill">…</span>. <span id="error"></span></p>
<h2>Hit rate per tier</h2>
<table>
  <thead><tr><th>tier</th><th>1 min</th><th>5 min</th><th>15 min</th></tr></thead>
  <tbody id="rates"></tbody>
  <tfoot><tr><td>validated without Keystone</td><td id="offload-1m">…</td><td id="offload-5m">…</td><td id="offload-15m">…</td></tr></tfoot>
</table>
<h2>Keystone endpoints</h2>
<table><thead><tr><th>endpoint</th><th>breaker</th><th>open for</th></tr></thead><tbody id="endpoints"></tbody></table>
<h2>Key ring</h2>
<p><span id="keys-count">…</span> keys, primary <span id="keys-primary">…</span>, primary age <span id="keys-age">…</span>, last reload <span id="keys-reload">…</span>, last read <span id="keys-checked">…</span> (<span id="keys-health">…</span>)</p>
<p>Against the master: <span id="keys-lag" class="badge">…</span> since <span id="keys-lag-since">…</span>, last agreed <span id="keys-lag-agreed">…</span>, last check <span id="keys-lag-check">…</span></p>
<h2>Revocation feed</h2>
<p><span id="feed-state">…</span>, last answer <span id="feed-lag">…</span> ago, <span id="feed-events">…</span> events held</p>
<section id="workers-section" hidden>
<h2>Workers</h2>
<p>The figures above are one worker's; each has its own caches and breakers.</p>
<table><thead><tr><th>worker</th><th>pid</th><th>state</th><th>started</th><th>replaced</th></tr></thead><tbody id="workers"></tbody></table>
</section>
<script src="status.js"></script>
</body>
</html>
`;

export const STATUS_PAGE_SCRIPT = `"use strict";
const WINDOWS = ["1m", "5m", "15m"];
function pct(x) { return x === null || x === undefined ? "—" : (x * 100).toFixed(1) + "%"; }
function secs(x) { return x === null || x === undefined ? "—" : x + " s"; }
function text(id, value) { document.getElementById(id).textContent = String(value); }
function cell(row, value, id) {
  const td = document.createElement("td");
  td.textContent = value;
  if (id) td.id = id;
  row.appendChild(td);
  return td;
}
function render(s) {
  const badge = document.getElementById("status");
  badge.textContent = s.status;
  badge.className = "badge " + s.status;
  text("uptime", secs(s.uptime_seconds));
  text("degraded", s.keystone.degraded_mode ? "yes" : "no");
  text(
    "drill",
    s.drill === null
      ? "none"
      : s.drill.scenario + " (" + s.drill.fault + ", ends " + s.drill.expires_at + ")",
  );
  const tiers = new Set();
  for (const w of WINDOWS) for (const t of Object.keys(s.hit_rates[w] || {})) tiers.add(t);
  const rates = document.getElementById("rates");
  rates.replaceChildren();
  for (const t of [...tiers].sort()) {
    const row = document.createElement("tr");
    cell(row, t);
    for (const w of WINDOWS) cell(row, pct((s.hit_rates[w] || {})[t]), "rate-" + t + "-" + w);
    rates.appendChild(row);
  }
  for (const w of WINDOWS) text("offload-" + w, pct(s.keystone_offload[w]));
  const endpoints = document.getElementById("endpoints");
  endpoints.replaceChildren();
  for (const e of s.keystone.endpoints) {
    const row = document.createElement("tr");
    row.dataset.endpoint = e.endpoint;
    cell(row, e.endpoint);
    cell(row, e.state).className = e.state;
    cell(row, e.open_for_seconds === undefined ? "" : secs(e.open_for_seconds));
    endpoints.appendChild(row);
  }
  text("keys-count", s.keys.count);
  text("keys-primary", s.keys.primary_index);
  text("keys-age", secs(s.keys.primary_age_seconds));
  text("keys-reload", s.keys.last_reload);
  text("keys-checked", s.keys.last_checked || "—");
  text("keys-health", s.keys.healthy ? "healthy" : "re-reads failing");
  const lag = s.keys.lag || { state: "unknown", since: null, last_agreed: null, last_check: null };
  const lagBadge = document.getElementById("keys-lag");
  lagBadge.textContent = lag.state === "in_sync" ? "in sync" : lag.state;
  lagBadge.className =
    "badge " + (lag.state === "behind" ? "degraded" : lag.state === "in_sync" ? "ok" : "");
  text("keys-lag-since", lag.since === null ? "—" : lag.since);
  text("keys-lag-agreed", lag.last_agreed === null ? "never" : lag.last_agreed);
  text(
    "keys-lag-check",
    lag.last_check === null
      ? "none yet"
      : lag.last_check.at +
          " (" +
          lag.last_check.trigger +
          ": " +
          lag.last_check.result +
          (lag.last_check.error ? ", " + lag.last_check.error : "") +
          ")",
  );
  text("feed-state", s.revocation_feed.state);
  text("feed-lag", secs(s.revocation_feed.lag_seconds));
  text("feed-events", s.revocation_feed.events);
  const workers = document.getElementById("workers");
  workers.replaceChildren();
  document.getElementById("workers-section").hidden = !s.workers;
  for (const w of s.workers || []) {
    const row = document.createElement("tr");
    row.dataset.worker = String(w.worker);
    cell(row, String(w.worker));
    cell(row, w.pid === null ? "—" : String(w.pid));
    cell(row, w.state).className = w.state === "serving" ? "closed" : "half-open";
    cell(row, w.started_at === null ? "—" : w.started_at);
    cell(row, String(w.restarts));
    workers.appendChild(row);
  }
  document.body.dataset.loaded = "1";
}
async function refresh() {
  try {
    const res = await fetch("status", { cache: "no-store" });
    render(await res.json());
    text("error", "");
  } catch (e) {
    text("error", "status unavailable: " + e);
  }
}
refresh();
setInterval(refresh, 5000);
`;

/**
 * Answers `GET /` (the page) and `GET /status.js` (its script), with the page's
 * Content-Security-Policy; false for any other path (nothing written).
 */
export function writeStatusPage(path: string, res: ServerResponse): boolean {
  if (path !== "/" && path !== "/status.js") return false;
  const page = path === "/";
  res
    .writeHead(200, {
      "content-type": page ? "text/html; charset=utf-8" : "text/javascript; charset=utf-8",
      "content-security-policy": "default-src 'self'; style-src 'unsafe-inline'",
      "x-content-type-options": "nosniff",
      "cache-control": "no-store",
    })
    .end(page ? STATUS_PAGE_HTML : STATUS_PAGE_SCRIPT);
  return true;
}
