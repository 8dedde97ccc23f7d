/**
 * `npm run bench:key-lag`: what a region whose Fernet keys lag the master costs the master
 * (issue 14, item 7), on the multi-region topology of the tests (test/harness/multi-region.ts:
 * a master Keystone behind TLS, two regions each with its own key copy, memcached, echo
 * service, `keystone-edge serve` and a delaying relay to the master).
 *
 * Owns: the bench's fixtures (USERS × PROJECTS user + project pairs, every user a member of
 * every project through a group), its traffic, the measurements and the verdict. The
 * topology and its operations (rotate, sync, delay) are the harness's.
 *
 * The run: both regions warm (every pair once, in shuffled order) while in sync; the master
 * rotates its keys twice; region A is synced, region B is not (it lags). Every request is
 * CLI-style: a token never seen before for a known pair, minted with the master's current
 * primary key (what `openstack` CLI runs send). Measured, as Keystone validation calls per
 * 1000 requests (the edge's own `keystone_edge_keystone_call_duration_seconds_count`):
 *
 * - A (synced, the baseline): TRACE requests — expected 0 (local decrypt, warm contexts);
 * - B lagging, paced under the fallback budget (LAG_RATE req/s): LAG_REQUESTS requests —
 *   expected one fallback call per request (no local key decrypts a new token), all 200;
 * - B lagging, far master: FAR_SAMPLES sequential fallbacks with the master near and with
 *   FAR_MS added per round trip, against a local decrypt in the same region (a token signed
 *   with the key B shares with the master), p50/p99; no TLS connection opened meanwhile;
 * - B lagging, a burst over the budget: BURST_REQUESTS at concurrency CONCURRENCY — the
 *   calls stay within the token bucket (burst + rate × elapsed), the rest refused (401);
 * - B synced: a warm-up pass (every pair once) then TRACE requests — expected ≤ 1 per 1000.
 *
 * Exit status 1 when a claim fails: a request of the baseline, the paced lag trace or after
 * sync not 200; a fallback call missing or a fallback not valid; the burst exceeding the
 * budget; more than 1 call per 1000 in A or in B after sync; a TLS connection opened per
 * fallback; the far fallback not about one round trip slower than the near one.
 *
 * Knobs (environment), defaults in brackets:
 * - BENCH_USERS [20], BENCH_PROJECTS [10]  known pairs (users × projects);
 * - BENCH_TRACE [5000]  requests in A and in B after sync;
 * - BENCH_LAG_REQUESTS [400], BENCH_LAG_RATE [15]  the paced lagging trace (req/s; the
 *   edge's default budget is 20/s with a burst of 100);
 * - BENCH_BURST_REQUESTS [400]  the burst over the budget;
 * - BENCH_FAR_MS [100]  added per round trip to the master for the far-away case;
 * - BENCH_FAR_SAMPLES [30]  fallbacks measured near and far, local decrypts likewise;
 * - BENCH_CONCURRENCY [16]; BENCH_SEED [1].
 *
 * CI smoke (43 s here, build and Keystone's start included): BENCH_TRACE=500 BENCH_LAG_REQUESTS=60
 * BENCH_BURST_REQUESTS=150 BENCH_FAR_SAMPLES=8 BENCH_USERS=10 BENCH_PROJECTS=5.
 */
import { cpus, release, totalmem } from "node:os";
import { readKeyRepository } from "../src/fernet/key-repository.js";
import { KeyRing, staticKeyRing } from "../src/fernet/key-ring.js";
import { TokenDecoder } from "../src/token/decoder.js";
import { randomAuditId } from "../src/token/payload.js";
import type { EpochMicros } from "../src/units.js";
import { adminUser } from "../test/harness/edge-config.js";
import { ensureDebianDeps } from "../test/harness/global-setup.js";
import { startKeystone, type KeystoneHandle } from "../test/harness/keystone.js";
import { startMultiRegion, type MultiRegion, type Region } from "../test/harness/multi-region.js";

const USERS = Number(process.env.BENCH_USERS ?? 20);
const PROJECTS = Number(process.env.BENCH_PROJECTS ?? 10);
const TRACE = Number(process.env.BENCH_TRACE ?? 5_000);
const LAG_REQUESTS = Number(process.env.BENCH_LAG_REQUESTS ?? 400);
const LAG_RATE = Number(process.env.BENCH_LAG_RATE ?? 15);
const BURST_REQUESTS = Number(process.env.BENCH_BURST_REQUESTS ?? 400);
const FAR_MS = Number(process.env.BENCH_FAR_MS ?? 100);
const FAR_SAMPLES = Number(process.env.BENCH_FAR_SAMPLES ?? 30);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const SEED = Number(process.env.BENCH_SEED ?? 1);
/** The edge's defaults (fernet.lag_fallback_per_second, lag_fallback_burst): not changed here. */
const BUDGET_PER_SECOND = 20;
const BUDGET_BURST = 100;
/** At most this many Keystone validations at once during warm-ups. */
const WARM_UP_CONCURRENCY = 6;
const LAG_CHECK_MS = 2_000;
const POLL_MS = 1_000;

const started = Date.now();
function say(s: string): void {
  const t = `[${String(Math.round((Date.now() - started) / 1000)).padStart(3)} s]`;
  process.stdout.write(`${t} ${s}\n`);
}

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Pair {
  readonly userId: string;
  readonly projectId: string;
}

async function pool(count: number, concurrency: number, job: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      for (let i = next++; i < count; i = next++) await job(i);
    }),
  );
}

function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((x, y) => x - y);
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
}

function per1000(calls: number, requests: number): number {
  return requests === 0 ? 0 : (1000 * calls) / requests;
}

async function until(what: string, check: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${String(ms)} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Mints tokens as Keystone would, with the primary key of `repository` (read once), or,
 * with `alsoIn`, with the highest key of `repository` other than the staged one that
 * `alsoIn` holds too (a key both the master and a lagging copy have).
 */
async function minter(
  repository: string,
  authMethods: readonly string[],
  alsoIn?: string,
): Promise<(p: Pair) => string> {
  let ring = await readKeyRepository(repository);
  if (alsoIn !== undefined) {
    const theirs = new Set((await readKeyRepository(alsoIn)).entries.map((e) => e.key.fingerprint));
    const common = ring.entries.find((e) => e.role !== "staged" && theirs.has(e.key.fingerprint));
    if (common === undefined) throw new Error(`no key of ${repository} is in ${alsoIn}`);
    ring = KeyRing.from([{ index: common.index, key: common.key }]);
  }
  const decoder = new TokenDecoder({ keys: staticKeyRing(ring), authMethods });
  return (p) =>
    decoder.mint({
      kind: "project",
      version: 2,
      userId: p.userId,
      methods: ["password"],
      auditIds: [randomAuditId()],
      projectId: p.projectId,
      expiresAtMicros: ((Math.floor(Date.now() / 1000) + 3600) * 1e6) as EpochMicros,
    });
}

interface Outcome {
  /** Requests sent. */
  readonly requests: number;
  /** Answers by status. */
  readonly statuses: Map<number, number>;
  /** Validation calls the region's edge made meanwhile. */
  readonly calls: number;
  readonly ms: number;
  /** Each request's time, ms. */
  readonly latencies: number[];
}

function show(m: ReadonlyMap<number, number>): string {
  return [...m].map(([s, n]) => `${String(n)}×${String(s)}`).join(" ");
}

function only200(o: Outcome): boolean {
  return o.statuses.size === 1 && o.statuses.get(200) === o.requests;
}

/** Sends `token(i)` for `count` requests, `concurrency` at a time, or paced at `rate` req/s. */
async function drive(
  region: Region,
  count: number,
  token: (i: number) => string,
  options: { readonly concurrency: number; readonly rate?: number },
): Promise<Outcome> {
  const statuses = new Map<number, number>();
  const latencies: number[] = [];
  const before = await region.validationCalls();
  const t0 = performance.now();
  const one = async (i: number) => {
    const res = await region.request(token(i));
    latencies.push(res.ms);
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
  };
  const rate = options.rate;
  if (rate === undefined) {
    await pool(count, options.concurrency, one);
  } else {
    // Open loop: request i leaves at i / rate s, whatever the answers.
    const all: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const wait = t0 + (1000 * i) / rate - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      all.push(one(i));
    }
    await Promise.all(all);
  }
  const ms = performance.now() - t0;
  return {
    requests: count,
    statuses,
    calls: (await region.validationCalls()) - before,
    ms,
    latencies,
  };
}

async function feedSucceededAfter(region: Region, sinceSeconds: number): Promise<void> {
  await until(
    `${region.name}'s revocation feed to poll successfully`,
    async () =>
      ((await region.metrics()).value(
        "keystone_edge_revocation_feed_last_success_timestamp_seconds",
      ) ?? 0) > sinceSeconds,
    30_000,
  );
}

async function main(): Promise<void> {
  ensureDebianDeps();
  const cpu = cpus();
  const machine = `${cpu[0]?.model.trim() ?? "?"}, ${String(cpu.length)} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}`;
  say(`bench:key-lag on ${machine}`);
  say(
    `${String(USERS)} users × ${String(PROJECTS)} projects; trace ${String(TRACE)}, lagging ${String(LAG_REQUESTS)} at ${String(LAG_RATE)}/s, burst ${String(BURST_REQUESTS)}, far master +${String(FAR_MS)} ms × ${String(FAR_SAMPLES)}`,
  );
  say("starting Keystone (its cache on memcached)…");
  let keystone: KeystoneHandle | undefined;
  let topology: MultiRegion | undefined;
  const failures: string[] = [];
  const claim = (ok: boolean, text: string): string => {
    if (!ok) failures.push(text);
    return ok ? "met" : "MISSED";
  };
  try {
    keystone = await startKeystone({ cache: "memcached" });
    const info = keystone.info;
    say("starting the master (replica behind TLS) and two regions…");
    topology = await startMultiRegion({
      keystone: info,
      serviceUser: adminUser(info),
      revocationPollMs: POLL_MS,
      lagCheckIntervalMs: LAG_CHECK_MS,
    });
    const { master } = topology;
    const a = topology.region("region-a");
    const b = topology.region("region-b");

    // --- fixtures: users × projects through one group ------------------------------
    const admin = await master.adminToken();
    const must = async (method: string, path: string, body?: unknown) => {
      const r = await master.api(admin, method, path, body);
      if (r.status >= 300) throw new Error(`${method} ${path}: HTTP ${String(r.status)}`);
      return r.json;
    };
    const member =
      ((await must("GET", "/roles?name=member")).roles as { id: string }[] | undefined)?.[0]?.id ??
      "";
    const tag = `kl-${String(Date.now())}`;
    const group = (
      (await must("POST", "/groups", { group: { name: tag, domain_id: "default" } })).group as {
        id: string;
      }
    ).id;
    const projects: string[] = [];
    const users: string[] = [];
    await pool(PROJECTS, 4, async (i) => {
      const p = (
        await must("POST", "/projects", {
          project: { name: `${tag}-p${String(i)}`, domain_id: "default" },
        })
      ).project as { id: string };
      projects[i] = p.id;
      await must("PUT", `/projects/${p.id}/groups/${group}/roles/${member}`);
    });
    await pool(USERS, 4, async (i) => {
      const u = (
        await must("POST", "/users", {
          user: { name: `${tag}-u${String(i)}`, domain_id: "default", password: "key-lag-pw" },
        })
      ).user as { id: string };
      users[i] = u.id;
      await must("PUT", `/groups/${group}/users/${u.id}`);
    });
    const pairs: Pair[] = [];
    for (const userId of users) for (const projectId of projects) pairs.push({ userId, projectId });
    const random = prng(SEED);
    for (let i = pairs.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [pairs[i], pairs[j]] = [pairs[j] as Pair, pairs[i] as Pair];
    }
    const pick = (): Pair => pairs[Math.floor(random() * pairs.length)] as Pair;
    say(`fixtures: ${String(pairs.length)} pairs`);

    // --- warm both regions while in sync -------------------------------------------
    const before = await minter(master.keyRepository, info.authMethods);
    const warm: { region: string; outcome: Outcome }[] = [];
    for (const region of [a, b]) {
      const o = await drive(region, pairs.length, (i) => before(pairs[i] as Pair), {
        concurrency: WARM_UP_CONCURRENCY,
      });
      warm.push({ region: region.name, outcome: o });
      say(
        `${region.name} warm-up (in sync): ${String(o.requests)} requests (${show(o.statuses)}) → ${String(o.calls)} calls`,
      );
      if (!only200(o)) failures.push(`${region.name} warm-up: not all 200`);
    }

    // --- two rotations; A synced, B lagging ----------------------------------------
    await master.rotateKeys();
    await master.rotateKeys();
    const rotatedAt = Date.now() / 1000 + 1.2;
    a.sync();
    await Promise.all([feedSucceededAfter(a, rotatedAt), feedSucceededAfter(b, rotatedAt)]);
    await until("B's key_repository_behind to be 1", async () => (await b.behind()) === 1, 20_000);
    await until("A's key_repository_behind to be 0", async () => (await a.behind()) === 0, 10_000);
    say("rotated twice; region A synced, region B behind (gauge 1)");
    const now = await minter(master.keyRepository, info.authMethods);
    // Signed with the master's secondary key, which B holds (as its staged key): the master
    // accepts it and B decrypts it — a token issued before the second rotation.
    const shared = await minter(master.keyRepository, info.authMethods, b.keyRepository);

    // --- A, synced: the baseline -----------------------------------------------------
    const trace = (n: number): Pair[] => Array.from({ length: n }, pick);
    const aTrace = trace(TRACE);
    const aOut = await drive(a, TRACE, (i) => now(aTrace[i] as Pair), { concurrency: CONCURRENCY });
    say(
      `A (synced): ${String(aOut.requests)} requests (${show(aOut.statuses)}) in ${(aOut.ms / 1000).toFixed(1)} s → ${String(aOut.calls)} calls`,
    );

    // --- B lagging, paced under the budget ---------------------------------------------
    const fallbacks = async (): Promise<{ valid: number; other: number; refused: number }> => {
      const m = await b.metrics();
      const valid = m.value("keystone_edge_key_lag_fallbacks_total", { result: "valid" }) ?? 0;
      return {
        valid,
        other: m.sum("keystone_edge_key_lag_fallbacks_total") - valid,
        refused: m.sum("keystone_edge_key_lag_fallback_refusals_total"),
      };
    };
    const f0 = await fallbacks();
    const lagTrace = trace(LAG_REQUESTS);
    const lagOut = await drive(b, LAG_REQUESTS, (i) => now(lagTrace[i] as Pair), {
      concurrency: CONCURRENCY,
      rate: LAG_RATE,
    });
    const f1 = await fallbacks();
    say(
      `B (lagging, ${String(LAG_RATE)}/s): ${String(lagOut.requests)} requests (${show(lagOut.statuses)}) in ${(lagOut.ms / 1000).toFixed(1)} s → ${String(lagOut.calls)} calls; fallbacks valid ${String(f1.valid - f0.valid)}, other ${String(f1.other - f0.other)}, refused ${String(f1.refused - f0.refused)}`,
    );

    // --- B lagging: one fallback near and far, against a local decrypt ------------------
    const farScopes = trace(FAR_SAMPLES * 3 + 4);
    const sequential = async (tokens: readonly string[]) => {
      const ms: number[] = [];
      const st = new Map<number, number>();
      const c0 = await b.validationCalls();
      for (const t of tokens) {
        const r = await b.request(t);
        ms.push(r.ms);
        st.set(r.status, (st.get(r.status) ?? 0) + 1);
      }
      return { ms, statuses: st, calls: (await b.validationCalls()) - c0 };
    };
    // near: the pool is warm from the paced trace
    const near = await sequential(farScopes.slice(0, FAR_SAMPLES).map(now));
    b.setMasterDelay(FAR_MS);
    let far: Awaited<ReturnType<typeof sequential>>;
    let local: Awaited<ReturnType<typeof sequential>>;
    let tlsOpened = 0;
    let relayOpened = 0;
    try {
      // four fallbacks at once, so that the pool holds what a validation and a revocation
      // poll in flight together need at this distance
      await Promise.all(
        farScopes.slice(FAR_SAMPLES * 3).map(async (p) => {
          const r = await b.request(now(p));
          if (r.status !== 200) failures.push(`far warm-up: HTTP ${String(r.status)}`);
        }),
      );
      const tls0 = master.frontend.connections;
      const relay0 = b.relay.accepted;
      far = await sequential(farScopes.slice(FAR_SAMPLES, FAR_SAMPLES * 2).map(now));
      local = await sequential(farScopes.slice(FAR_SAMPLES * 2, FAR_SAMPLES * 3).map(shared));
      tlsOpened = master.frontend.connections - tls0;
      relayOpened = b.relay.accepted - relay0;
    } finally {
      b.setMasterDelay(0);
    }
    const row = (name: string, x: { ms: number[]; statuses: Map<number, number>; calls: number }) =>
      `${name}: p50 ${quantile(x.ms, 0.5).toFixed(1)} ms, p99 ${quantile(x.ms, 0.99).toFixed(1)} ms (${show(x.statuses)}, ${String(x.calls)} calls)`;
    say(row("B local decrypt, master far", local));
    say(row("B fallback, master near", near));
    say(row(`B fallback, master +${String(FAR_MS)} ms`, far));
    say(
      `TLS connections opened at the master during the far samples: ${String(tlsOpened)}; relay connections: ${String(relayOpened)} (master totals: ${String(master.frontend.connections)}, ${String(master.frontend.resumed)} resumed)`,
    );

    // --- B lagging: a burst over the budget ---------------------------------------------
    await new Promise((r) => setTimeout(r, (1000 * BUDGET_BURST) / BUDGET_PER_SECOND + 500));
    const burstTrace = trace(BURST_REQUESTS);
    const fb0 = await fallbacks();
    const burstOut = await drive(b, BURST_REQUESTS, (i) => now(burstTrace[i] as Pair), {
      concurrency: CONCURRENCY,
    });
    const fb1 = await fallbacks();
    const burstAllowed = Math.floor(BUDGET_BURST + (BUDGET_PER_SECOND * burstOut.ms) / 1000) + 1;
    say(
      `B (lagging, burst at concurrency ${String(CONCURRENCY)}): ${String(burstOut.requests)} requests (${show(burstOut.statuses)}) in ${(burstOut.ms / 1000).toFixed(1)} s → ${String(burstOut.calls)} calls (budget allows ${String(burstAllowed)}); refused ${String(fb1.refused - fb0.refused)}`,
    );

    // --- B synced ------------------------------------------------------------------------
    b.sync();
    const syncedAt = Date.now();
    await until("B's key_repository_behind to be 0", async () => (await b.behind()) === 0, 20_000);
    const clearedMs = Date.now() - syncedAt;
    say(`B synced: behind cleared in ${String(clearedMs)} ms`);
    const bWarm = await drive(b, pairs.length, (i) => now(pairs[i] as Pair), {
      concurrency: WARM_UP_CONCURRENCY,
    });
    say(
      `B warm-up after sync: ${String(bWarm.requests)} requests (${show(bWarm.statuses)}) → ${String(bWarm.calls)} calls`,
    );
    const bTrace = trace(TRACE);
    const bOut = await drive(b, TRACE, (i) => now(bTrace[i] as Pair), { concurrency: CONCURRENCY });
    say(
      `B (synced): ${String(bOut.requests)} requests (${show(bOut.statuses)}) in ${(bOut.ms / 1000).toFixed(1)} s → ${String(bOut.calls)} calls`,
    );

    // --- the table and the verdict -------------------------------------------------------
    const aRate = per1000(aOut.calls, aOut.requests);
    const lagRate = per1000(lagOut.calls, lagOut.requests);
    const burstRate = per1000(burstOut.calls, burstOut.requests);
    const bRate = per1000(bOut.calls, bOut.requests);
    const lagValid = f1.valid - f0.valid;
    const lines: string[][] = [
      ["case", "requests", "answers", "Keystone calls", "per 1000", "claim"],
      [
        "A synced (baseline), after warm-up",
        String(aOut.requests),
        show(aOut.statuses),
        String(aOut.calls),
        aRate.toFixed(2),
        `≤ 1, all 200: ${claim(aRate <= 1 && only200(aOut), "A: more than 1 call per 1000 or a failure")}`,
      ],
      [
        `B lagging, ${String(LAG_RATE)}/s (under the budget)`,
        String(lagOut.requests),
        show(lagOut.statuses),
        String(lagOut.calls),
        lagRate.toFixed(0),
        `one per token, all 200: ${claim(
          only200(lagOut) &&
            lagValid === lagOut.requests &&
            lagOut.calls >= lagOut.requests &&
            lagOut.calls <= lagOut.requests + 2,
          "B lagging: a fallback failed or a token cost other than one call",
        )}`,
      ],
      [
        `B lagging, burst at concurrency ${String(CONCURRENCY)}`,
        String(burstOut.requests),
        show(burstOut.statuses),
        String(burstOut.calls),
        burstRate.toFixed(0),
        `≤ budget ${String(burstAllowed)}: ${claim(
          burstOut.calls <= burstAllowed &&
            (burstOut.statuses.get(200) ?? 0) === burstOut.calls &&
            (burstOut.statuses.get(200) ?? 0) + (burstOut.statuses.get(401) ?? 0) ===
              burstOut.requests,
          "B burst: calls over the budget, or a fallback that was not a 200",
        )}`,
      ],
      [
        "B after sync, warm-up (every pair once)",
        String(bWarm.requests),
        show(bWarm.statuses),
        String(bWarm.calls),
        per1000(bWarm.calls, bWarm.requests).toFixed(0),
        `all 200: ${claim(only200(bWarm), "B warm-up after sync: a failure")}`,
      ],
      [
        "B after sync, after warm-up",
        String(bOut.requests),
        show(bOut.statuses),
        String(bOut.calls),
        bRate.toFixed(2),
        `≤ 1, all 200: ${claim(bRate <= 1 && only200(bOut), "B after sync: more than 1 call per 1000 or a failure")}`,
      ],
    ];
    const widths = (lines[0] ?? []).map((_, c) =>
      Math.max(...lines.map((l) => (l[c] ?? "").length)),
    );
    process.stdout.write("\n");
    for (const l of lines) {
      process.stdout.write(`  ${l.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join("  ")}\n`);
    }
    const p = (x: { ms: number[] }, q: number) => quantile(x.ms, q);
    const extra = p(far, 0.5) - p(near, 0.5);
    const fallbackOk =
      near.calls === FAR_SAMPLES &&
      far.calls === FAR_SAMPLES &&
      local.calls === 0 &&
      (near.statuses.get(200) ?? 0) === FAR_SAMPLES &&
      (far.statuses.get(200) ?? 0) === FAR_SAMPLES &&
      (local.statuses.get(200) ?? 0) === FAR_SAMPLES;
    process.stdout.write("\n");
    process.stdout.write(
      [
        `  one request in the lagging region B (${String(FAR_SAMPLES)} sequential samples each):`,
        `    local decrypt, master +${String(FAR_MS)} ms: p50 ${p(local, 0.5).toFixed(1)} ms, p99 ${p(local, 0.99).toFixed(1)} ms`,
        `    fallback, master near:       p50 ${p(near, 0.5).toFixed(1)} ms, p99 ${p(near, 0.99).toFixed(1)} ms (${(p(near, 0.5) / p(local, 0.5)).toFixed(1)}× local at p50)`,
        `    fallback, master +${String(FAR_MS)} ms:   p50 ${p(far, 0.5).toFixed(1)} ms, p99 ${p(far, 0.99).toFixed(1)} ms (${(p(far, 0.5) / p(local, 0.5)).toFixed(1)}× local at p50)`,
        `    far − near at p50: ${extra.toFixed(1)} ms = ${(extra / FAR_MS).toFixed(2)} round trips (claim 0.6–1.7: ${claim(extra > FAR_MS * 0.6 && extra < FAR_MS * 1.7, "far fallback not about one round trip more than near")})`,
        `    every fallback one call and 200, every local decrypt none: ${claim(fallbackOk, "a fallback failed (near/far) or a local decrypt called Keystone")}`,
        `    TLS connections opened at the master meanwhile: ${String(tlsOpened)}, through B's relay: ${String(relayOpened)} (claim 0: ${claim(tlsOpened === 0 && relayOpened === 0, "a TLS connection opened per fallback")})`,
        `  B's lag cleared ${String(clearedMs)} ms after the sync (lag check every ${String(LAG_CHECK_MS)} ms here)`,
        `  machine: ${machine}`,
      ].join("\n") + "\n",
    );
    if (failures.length > 0) throw new Error(`claims missed:\n  ${failures.join("\n  ")}`);
    say("all claims met");
  } finally {
    await topology?.close();
    await keystone?.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench:key-lag failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
