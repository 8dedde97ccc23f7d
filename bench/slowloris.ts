/**
 * bench:slowloris — slow heads and slow bodies against a whole edge in process, while
 * valid requests keep flowing: do they keep their latency, and are the attackers'
 * connections closed by the configured deadlines?
 *
 * Phase 1 measures valid requests alone (the baseline, same process, same edge). Phase 2
 * opens SLOW_HEADS connections that trickle one header line a second and never finish
 * their head, SLOW_BODIES that send a head with a valid token and then stall their body, and
 * TRICKLE_BODIES that send their body a byte a second (never silent long enough for the
 * body deadline: only `request_timeout_ms` ends them), and measures valid requests again.
 * Prints p50/p99/max of both phases and their ratio, and for each kind of attacker how many
 * connections the edge closed and how long after opening, against the configured limit.
 *
 * Environment: SLOW_HEADS (1000), SLOW_BODIES (200), TRICKLE_BODIES (100), VALID_REQUESTS
 * (3000 per phase), CONCURRENCY (8). The edge runs with headers_timeout_ms 10 000 (the
 * default), body_timeout_ms 5 000 and request_timeout_ms 20 000 (shortened so the run
 * takes under a minute).
 */
import { createServer } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { startRegion, type Region } from "../test/unit/fault-matrix/region.js";

const SLOW_HEADS = Number(process.env["SLOW_HEADS"] ?? 1_000);
const SLOW_BODIES = Number(process.env["SLOW_BODIES"] ?? 200);
const TRICKLE_BODIES = Number(process.env["TRICKLE_BODIES"] ?? 100);
const VALID = Number(process.env["VALID_REQUESTS"] ?? 3_000);
const CONCURRENCY = Number(process.env["CONCURRENCY"] ?? 8);
const LIMITS = { headers_timeout_ms: 10_000, body_timeout_ms: 5_000, request_timeout_ms: 20_000 };

const service = createServer((req, res) => {
  req.resume();
  req.on("end", () => res.end("ok"));
});
await new Promise<void>((r) => service.listen(0, "127.0.0.1", r));
const region = await startRegion({
  upstream: `http://127.0.0.1:${String((service.address() as AddressInfo).port)}`,
  client: LIMITS,
});
const port = region.edge.address.port;
const tokens = Array.from({ length: 50 }, (_, i) => region.mint(i + 1, (i % 5) + 1));

async function validPhase(r: Region): Promise<{ ms: number[]; failed: number }> {
  const ms: number[] = [];
  let failed = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < VALID) {
        const token = tokens[next++ % tokens.length] as string;
        const a = await r.request(token);
        if (a.status === 200) ms.push(a.ms);
        else failed++;
      }
    }),
  );
  return { ms: ms.sort((a, b) => a - b), failed };
}

const pct = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;

interface Attacker {
  readonly socket: Socket;
  readonly openedAt: number;
  closedAt: number | undefined;
  timer: NodeJS.Timeout | undefined;
}

function attacker(kind: "head" | "stall" | "trickle"): Attacker {
  const socket = connect(port, "127.0.0.1");
  const a: Attacker = {
    socket,
    openedAt: performance.now(),
    closedAt: undefined,
    timer: undefined,
  };
  socket.on("error", () => undefined);
  socket.on("data", () => undefined);
  socket.on("close", () => {
    a.closedAt = performance.now();
    clearInterval(a.timer);
  });
  const token = tokens[0] as string;
  if (kind === "head") {
    socket.write("GET /v2.1/servers HTTP/1.1\r\nHost: nova\r\n");
    a.timer = setInterval(() => socket.write("X-Slow: 1\r\n"), 1_000);
  } else {
    socket.write(
      `PUT /v2/images/x/file HTTP/1.1\r\nHost: glance\r\nX-Auth-Token: ${token}\r\nContent-Length: 1000000\r\n\r\nx`,
    );
    if (kind === "trickle") a.timer = setInterval(() => socket.write("x"), 1_000);
  }
  return a;
}

const lag = monitorEventLoopDelay({ resolution: 10 });
const baseline = await validPhase(region);
lag.enable();
const attackStarted = performance.now();
/** Opens attackers 100 at a time (a burst of thousands of SYNs overflows the listen backlog). */
async function ramp(kind: "head" | "stall" | "trickle", n: number): Promise<Attacker[]> {
  const out: Attacker[] = [];
  while (out.length < n) {
    for (let i = 0; i < 100 && out.length < n; i++) out.push(attacker(kind));
    await new Promise((r) => setTimeout(r, 100));
  }
  return out;
}
const [attacked, heads, stalls, trickles] = await Promise.all([
  validPhase(region),
  ramp("head", SLOW_HEADS),
  ramp("stall", SLOW_BODIES),
  ramp("trickle", TRICKLE_BODIES),
]);
// Wait (bounded) until every attacker is closed, or well past the longest limit.
const waitUntil = attackStarted + LIMITS.request_timeout_ms + 5_000;
const all = [...heads, ...stalls, ...trickles];
while (all.some((a) => a.closedAt === undefined) && performance.now() < waitUntil) {
  await new Promise((r) => setTimeout(r, 200));
}
lag.disable();
const refusals = {
  headers: await region.metric("keystone_edge_client_refusals_total", {
    reason: "headers_timeout",
  }),
  body: await region.metric("keystone_edge_client_refusals_total", { reason: "body_timeout" }),
  request: await region.metric("keystone_edge_client_refusals_total", {
    reason: "request_timeout",
  }),
};
for (const a of all) {
  clearInterval(a.timer);
  a.socket.destroy();
}
await region.close();
service.close();

function closedReport(name: string, group: Attacker[], limitMs: number): boolean {
  const closed = group.filter((a) => a.closedAt !== undefined);
  const after = closed.map((a) => (a.closedAt ?? 0) - a.openedAt).sort((x, y) => x - y);
  // Node checks head and request deadlines every second (connectionsCheckingInterval), and
  // a loop busy with the attack itself adds to that: allow 3 s past the limit.
  const ok =
    closed.length === group.length &&
    (after[0] ?? 0) >= limitMs - 100 &&
    (after.at(-1) ?? 0) <= limitMs + 3_000;
  console.log(
    `${name.padEnd(16)} ${String(closed.length)}/${String(group.length)} closed by the edge, after ${(pct(after, 0) / 1000).toFixed(1)}–${((after.at(-1) ?? NaN) / 1000).toFixed(1)} s (limit ${String(limitMs / 1000)} s) ${ok ? "ok" : "NOT OK"}`,
  );
  return ok;
}

console.log("\nbench:slowloris — valid requests while slow clients hold connections");
console.log(
  `attackers        ${String(SLOW_HEADS)} slow heads, ${String(SLOW_BODIES)} stalled bodies, ${String(TRICKLE_BODIES)} trickling bodies`,
);
const line = (name: string, r: { ms: number[]; failed: number }): void => {
  console.log(
    `${name.padEnd(16)} ${String(r.ms.length)} ok, ${String(r.failed)} failed; p50 ${pct(r.ms, 50).toFixed(2)} ms, p99 ${pct(r.ms, 99).toFixed(2)} ms, max ${(r.ms.at(-1) ?? NaN).toFixed(2)} ms`,
  );
};
line("valid, alone", baseline);
line("valid, attacked", attacked);
console.log(
  `ratio            p50 ×${(pct(attacked.ms, 50) / pct(baseline.ms, 50)).toFixed(2)}, p99 ×${(pct(attacked.ms, 99) / pct(baseline.ms, 99)).toFixed(2)}`,
);
console.log(
  `event loop       lag during the attack p99 ${(lag.percentile(99) / 1e6).toFixed(1)} ms, max ${(lag.max / 1e6).toFixed(1)} ms (client and edge share this process)`,
);
const okHeads = closedReport("slow heads", heads, LIMITS.headers_timeout_ms);
const okStalls = closedReport("stalled bodies", stalls, LIMITS.body_timeout_ms);
const okTrickles = closedReport("trickling bodies", trickles, LIMITS.request_timeout_ms);
console.log(
  `refusals metric  headers_timeout ${String(refusals.headers)}, body_timeout ${String(refusals.body)}, request_timeout ${String(refusals.request)}`,
);
const ok = okHeads && okStalls && okTrickles && attacked.failed === 0 && baseline.failed === 0;
console.log(ok ? "PASSED" : "FAILED");
process.exit(ok ? 0 : 1);
