/**
 * `npm run bench:master-load`: how much validation load the master Keystone still sees
 * behind keystone-edge, against a per-token cache (keystonemiddleware's model), in the
 * same run against the same real Keystone.
 *
 * The trace is CLI-style: every request carries a token never seen before (what
 * `openstack server list` does each time it runs), for one of USERS × PROJECTS user +
 * project pairs (every user a member of every project, through a group). Tokens are sealed
 * with Keystone's own keys in Keystone's own payload format (issuing thousands through
 * password authentication would measure bcrypt, not validation); Keystone validates them
 * like any other. It starts with a warm-up in which every pair appears once, in random
 * order; then REQUESTS requests with pairs drawn at random (seeded), interrupted three
 * times by a revocation: a token is revoked (`DELETE /v3/auth/tokens`), a user is
 * disabled, a user's role is removed — and the bench checks that the edge refuses the
 * revoked token / the user within the poll interval.
 *
 * Figures: Keystone validation calls per 1000 requests — during warm-up and after it —
 * for keystone-edge (per-scope contexts, the default configuration) and for the same edge
 * with contexts off (`context_cache_time: 0`: a per-token cache, keystonemiddleware's
 * model), the latter over the first BASELINE requests of the same trace (each fresh token
 * costs it one call, so a prefix gives its rate; the whole trace would take the master
 * minutes on this machine). Target: ≤ 1 call per 1000 requests after warm-up.
 *
 * Knobs (environment): BENCH_USERS (100), BENCH_PROJECTS (10), BENCH_REQUESTS (20 000),
 * BENCH_BASELINE (1 000), BENCH_CONCURRENCY (16), BENCH_SEED (1).
 */
import { readKeyRepository } from "../src/fernet/key-repository.js";
import { staticKeyRing } from "../src/fernet/key-ring.js";
import type { RunningEdge } from "../src/edge/running-edge.js";
import { TokenDecoder } from "../src/token/decoder.js";
import { randomAuditId } from "../src/token/payload.js";
import type { EpochMicros } from "../src/units.js";
import { issueToken, type KeystoneInfo } from "../test/harness/client.js";
import { startEchoUpstream } from "../test/harness/echo-upstream.js";
import { adminUser, edgeConfigDocument } from "../test/harness/edge-config.js";
import { api } from "../test/harness/fixtures.js";
import { ensureDebianDeps } from "../test/harness/global-setup.js";
import { startKeystone } from "../test/harness/keystone.js";
import { startTestEdge } from "../test/harness/test-edge.js";

const USERS = Number(process.env.BENCH_USERS ?? 100);
const PROJECTS = Number(process.env.BENCH_PROJECTS ?? 10);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 20_000);
const BASELINE = Math.min(REQUESTS, Number(process.env.BENCH_BASELINE ?? 1_000));
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const SEED = Number(process.env.BENCH_SEED ?? 1);
/** At most this many Keystone validations at once (the harness Keystone serves eight). */
const WARM_UP_CONCURRENCY = 6;
const POLL_INTERVAL_MS = 1_000;

function say(s: string): void {
  process.stdout.write(`${s}\n`);
}

/** mulberry32: a small seeded PRNG, so that both edges see the same trace. */
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
  readonly user: number;
  readonly project: number;
}

/** Runs `count` jobs, `concurrency` at a time. */
async function pool(count: number, concurrency: number, job: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      for (let i = next++; i < count; i = next++) await job(i);
    }),
  );
}

async function keystoneCalls(edge: RunningEdge): Promise<number> {
  const values = (await edge.metrics.keystoneCalls.get()).values;
  return values.filter((v) => v.metricName?.endsWith("_count")).reduce((a, v) => a + v.value, 0);
}

async function main(): Promise<void> {
  ensureDebianDeps();
  say(
    `bench:master-load: ${String(USERS)} users × ${String(PROJECTS)} projects, ${String(REQUESTS)} requests after warm-up`,
  );
  say("starting Keystone (about 20 s)…");
  // Keystone as production runs it: with its cache (memcached) on.
  const keystone = await startKeystone({ cache: "memcached" });
  const echo = await startEchoUpstream();
  const edges: RunningEdge[] = [];
  try {
    const info: KeystoneInfo = keystone.info;
    const admin = (await issueToken(info, { kind: "project", name: "admin", domainId: "default" }))
      .token;
    const must = async (method: string, path: string, body?: unknown, subject?: string) => {
      const r = await api(info, admin, method, path, body, subject);
      if (r.status >= 300) throw new Error(`${method} ${path}: HTTP ${String(r.status)}`);
      return r.json;
    };
    const t0 = Date.now();
    const member =
      ((await must("GET", "/roles?name=member")).roles as { id: string }[])[0]?.id ?? "";
    const tag = `ml-${String(Date.now())}`;
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
          user: { name: `${tag}-u${String(i)}`, domain_id: "default", password: "master-load-pw" },
        })
      ).user as { id: string };
      users[i] = u.id;
      await must("PUT", `/groups/${group}/users/${u.id}`);
    });
    say(
      `fixtures: ${String(USERS)} users, ${String(PROJECTS)} projects in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );

    const decoder = new TokenDecoder({
      keys: staticKeyRing(await readKeyRepository(info.keyRepository)),
      authMethods: info.authMethods,
    });
    const mint = (p: Pair): string =>
      decoder.mint({
        kind: "project",
        version: 2,
        userId: users[p.user] ?? "",
        methods: ["password"],
        auditIds: [randomAuditId()],
        projectId: projects[p.project] ?? "",
        expiresAtMicros: ((Math.floor(Date.now() / 1000) + 3600) * 1e6) as EpochMicros,
      });

    // The trace: a warm-up with every pair once, then random pairs.
    const random = prng(SEED);
    const warmUp: Pair[] = [];
    for (let user = 0; user < USERS; user++)
      for (let project = 0; project < PROJECTS; project++) warmUp.push({ user, project });
    for (let i = warmUp.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [warmUp[i], warmUp[j]] = [warmUp[j] as Pair, warmUp[i] as Pair];
    }
    const trace: Pair[] = Array.from({ length: REQUESTS }, () => ({
      user: Math.floor(random() * USERS),
      project: Math.floor(random() * PROJECTS),
    }));

    const startEdgeWith = async (cache: Record<string, unknown>) => {
      const { edge, url } = await startTestEdge(
        edgeConfigDocument(info, {
          upstream: echo.url,
          user: adminUser(info),
          cache: { token_cache_time: 600, ...cache },
          keystone: { revocation_poll_interval_ms: POLL_INTERVAL_MS },
        }),
      );
      edges.push(edge);
      return { edge, url };
    };
    const send = async (url: string, token: string): Promise<number> => {
      const res = await fetch(`${url}/v2.1/servers`, { headers: { "X-Auth-Token": token } });
      await res.arrayBuffer();
      return res.status;
    };
    const run = async (
      url: string,
      pairs: readonly Pair[],
      concurrency: number,
      skip: ReadonlySet<number> = new Set(),
    ) => {
      const statuses = new Map<number, number>();
      await pool(pairs.length, concurrency, async (i) => {
        const p = pairs[i] as Pair;
        if (skip.has(p.user)) return;
        const s = await send(url, mint(p));
        statuses.set(s, (statuses.get(s) ?? 0) + 1);
      });
      return statuses;
    };
    const show = (m: Map<number, number>): string =>
      [...m].map(([s, n]) => `${String(n)}×${String(s)}`).join(" ");

    // --- keystone-edge, default configuration (contexts on) ----------------------------
    const ours = await startEdgeWith({});
    let t = Date.now();
    const warm = await run(ours.url, warmUp, WARM_UP_CONCURRENCY);
    const warmCalls = await keystoneCalls(ours.edge);
    say(
      `keystone-edge warm-up: ${String(warmUp.length)} requests (${show(warm)}) → ${String(warmCalls)} Keystone calls in ${((Date.now() - t) / 1000).toFixed(1)} s`,
    );

    // The trace in four parts, with a revocation between each.
    const quarter = Math.ceil(REQUESTS / 4);
    const disabled = new Set<number>();
    const checks: { readonly text: string; readonly ok: boolean }[] = [];
    const traceStatuses = new Map<number, number>();
    let traceMs = 0;
    const revocations: (() => Promise<void>)[] = [
      async () => {
        // a token the edge has cached is deleted at Keystone
        const token = mint({ user: 0, project: 0 });
        const before = await send(ours.url, token);
        await must("DELETE", "/auth/tokens", undefined, token);
        await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS + 1_000));
        const after = await send(ours.url, token);
        checks.push({
          text: `revoked token: HTTP ${String(before)} before, ${String(after)} after`,
          ok: before === 200 && after === 401,
        });
      },
      async () => {
        // a user is disabled: their cached token stops working (Keystone issues them no
        // new one; it would not re-check a token it never issued, so none is sent)
        const token = mint({ user: 1, project: 0 });
        const before = await send(ours.url, token);
        await must("PATCH", `/users/${users[1] ?? ""}`, { user: { enabled: false } });
        disabled.add(1);
        await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS + 1_000));
        const after = await send(ours.url, token);
        checks.push({
          text: `disabled user: cached token HTTP ${String(before)} before, ${String(after)} after`,
          ok: before === 200 && after === 401,
        });
      },
      async () => {
        // a user leaves the group: no role on any project any more; their cached token is
        // refused, and a new token for a scope the edge knows is not answered from the old
        // context (Keystone is asked, and refuses it)
        const token = mint({ user: 2, project: 0 });
        const before = await send(ours.url, token);
        await must("DELETE", `/groups/${group}/users/${users[2] ?? ""}`);
        disabled.add(2);
        await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS + 1_000));
        const after = await send(ours.url, token);
        const fresh = await send(ours.url, mint({ user: 2, project: 3 % PROJECTS }));
        checks.push({
          text: `user removed from the group: HTTP ${String(before)} before; after: cached token ${String(after)}, new token ${String(fresh)}`,
          ok: before === 200 && after === 401 && fresh === 401,
        });
      },
    ];
    const callsBeforeTrace = await keystoneCalls(ours.edge);
    let revocationCalls = 0;
    for (let part = 0; part < 4; part++) {
      t = Date.now();
      const s = await run(
        ours.url,
        trace.slice(part * quarter, (part + 1) * quarter),
        CONCURRENCY,
        disabled,
      );
      traceMs += Date.now() - t;
      for (const [k, v] of s) traceStatuses.set(k, (traceStatuses.get(k) ?? 0) + v);
      const revoke = revocations[part];
      if (revoke) {
        const c0 = await keystoneCalls(ours.edge);
        await revoke();
        revocationCalls += (await keystoneCalls(ours.edge)) - c0;
      }
    }
    const traceCalls = (await keystoneCalls(ours.edge)) - callsBeforeTrace - revocationCalls;
    const served = [...traceStatuses.values()].reduce((a, b) => a + b, 0);
    say(
      `keystone-edge trace: ${String(served)} requests (${show(traceStatuses)}) in ${(traceMs / 1000).toFixed(1)} s (${Math.round(served / (traceMs / 1000)).toString()} req/s) → ${String(traceCalls)} Keystone calls`,
    );
    for (const c of checks) say(`  ${c.text} (${c.ok ? "honoured" : "NOT HONOURED"})`);
    say(`  (the revocation checks themselves cost ${String(revocationCalls)} Keystone calls)`);

    // --- the same edge with contexts off: a per-token cache ------------------------------
    const perToken = await startEdgeWith({ context_cache_time: 0 });
    const base0 = await keystoneCalls(perToken.edge);
    t = Date.now();
    const baseStatuses = await run(
      perToken.url,
      trace.slice(0, BASELINE),
      WARM_UP_CONCURRENCY,
      disabled,
    );
    const baseCalls = (await keystoneCalls(perToken.edge)) - base0;
    const baseServed = [...baseStatuses.values()].reduce((a, b) => a + b, 0);
    say(
      `per-token cache: ${String(baseServed)} requests (${show(baseStatuses)}) in ${((Date.now() - t) / 1000).toFixed(1)} s → ${String(baseCalls)} Keystone calls`,
    );

    const per1000 = (calls: number, requests: number) =>
      requests === 0 ? 0 : (1000 * calls) / requests;
    const ourRate = per1000(traceCalls, served);
    const baseRate = per1000(baseCalls, baseServed);
    say("");
    say(`Keystone validation calls per 1000 requests (after warm-up):`);
    say(
      `  keystone-edge:   ${ourRate.toFixed(2)}   (target ≤ 1: ${ourRate <= 1 ? "met" : "MISSED"})`,
    );
    say(`  per-token cache: ${baseRate.toFixed(1)}`);
    say(
      `  reduction:       ${ourRate === 0 ? `all ${String(baseCalls)} calls of the per-token cache avoided` : `${(baseRate / ourRate).toFixed(0)}×`}`,
    );
    say(
      `warm-up (every pair once): ${per1000(warmCalls, warmUp.length).toFixed(0)} per 1000 for keystone-edge`,
    );
    say(
      `plus, for either, one revocation-feed poll per ${String(POLL_INTERVAL_MS / 1000)} s here (10 s by default) per edge`,
    );
    const failed = [...traceStatuses.keys(), ...warm.keys()].filter((s) => s !== 200);
    if (failed.length > 0) throw new Error(`requests failed: ${failed.join(", ")}`);
    if (checks.some((c) => !c.ok)) throw new Error("a revocation was not honoured in time");
    if (ourRate > 1) throw new Error("the edge asked Keystone more than once per 1000 requests");
  } finally {
    await Promise.all(edges.map((e) => e.close(1_000)));
    await echo.stop();
    await keystone.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench:master-load failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
