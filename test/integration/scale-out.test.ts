/**
 * Scaling a region out: two edges behind a balancer share three real memcached servers
 * (issue 17, item 4). Entries spread over the three (rendezvous hashing); a token one edge
 * validated is a memcached hit at the other, with no call to Keystone; one server killed
 * costs only its share of hits — those tokens go to Keystone, nothing fails, nothing stalls,
 * its breaker shows open — and once it is back it is used again.
 */
import memjs from "memjs";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

import { MemcachedPool } from "../../src/cache/memcached.js";
import { CacheKeyer } from "../../src/cache/token-key.js";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { readKeyRepository } from "../../src/fernet/key-repository.js";
import { staticKeyRing } from "../../src/fernet/key-ring.js";
import { TokenDecoder } from "../../src/token/decoder.js";
import { randomAuditId, type TokenPayload } from "../../src/token/payload.js";
import type { EpochMicros } from "../../src/units.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { startMemcached, type MemcachedHandle } from "../harness/memcached.js";
import { startTestEdge } from "../harness/test-edge.js";
import { waitUntil } from "../harness/wait.js";

const keystone = inject("keystone");
const SECRET = "the region's memcache secret key";
/** Tokens per server at least: enough for a dead server's breaker to open (5 failures). */
const PER_SERVER = 6;
let servers: MemcachedHandle[] = [];
let echo: EchoUpstream;
const edges: RunningEdge[] = [];
let decoder: TokenDecoder;
let template: TokenPayload;

async function newEdge(): Promise<{ edge: RunningEdge; url: string }> {
  const started = await startTestEdge(
    edgeConfigDocument(keystone, {
      upstream: echo.url,
      user: adminUser(keystone),
      // Contexts off: every token's own entry is what is shared (and counted).
      cache: {
        memcached_servers: servers.map((s) => s.address),
        memcache_secret_key: SECRET,
        context_cache_time: 0,
      },
    }),
  );
  edges.push(started.edge);
  return started;
}

/** A token as Keystone would issue it now: the admin's project scope, a new audit id. */
function mint(): string {
  return decoder.mint({
    ...template,
    auditIds: [randomAuditId()],
    expiresAtMicros: ((Math.floor(Date.now() / 1000) + 3600) * 1e6) as EpochMicros,
  });
}

/** The server of `cache.memcached_servers` that holds `token`'s entry. */
function home(token: string): string {
  const pool = new MemcachedPool(servers.map((s) => s.address));
  try {
    return pool.serverFor(new CacheKeyer(SECRET).memcachedKey(token)).server;
  } finally {
    pool.close();
  }
}

async function status(url: string, token: string): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  const res = await fetch(`${url}/v2.1/servers`, { headers: { "X-Auth-Token": token } });
  await res.arrayBuffer();
  return { status: res.status, ms: performance.now() - started };
}

async function validations(edge: RunningEdge, source: string): Promise<number> {
  return (await edge.metrics.validations.get()).values
    .filter((v) => v.labels["source"] === source && v.labels["result"] === "valid")
    .reduce((n, v) => n + v.value, 0);
}

async function stored(edge: RunningEdge): Promise<number> {
  return (await edge.metrics.memcachedCalls.get()).values
    .filter(
      (v) =>
        v.metricName === "keystone_edge_memcached_call_duration_seconds_count" &&
        v.labels["op"] === "set" &&
        v.labels["outcome"] === "stored",
    )
    .reduce((n, v) => n + v.value, 0);
}

async function breaker(edge: RunningEdge, server: string): Promise<string | undefined> {
  return (await edge.metrics.memcachedBreaker.get()).values.find(
    (v) => v.labels["server"] === server && v.value === 1,
  )?.labels["state"] as string | undefined;
}

beforeAll(async () => {
  servers = await Promise.all([startMemcached(), startMemcached(), startMemcached()]);
  echo = await startEchoUpstream();
  const issued = await issueToken(keystone, {
    kind: "project",
    name: "admin",
    domainId: "default",
  });
  decoder = new TokenDecoder({
    keys: staticKeyRing(await readKeyRepository(keystone.keyRepository)),
    authMethods: keystone.authMethods,
  });
  const decoded = decoder.decode(issued.token);
  if (decoded.status !== "valid") throw new Error("cannot read Keystone's token");
  template = decoded.token.payload;
}, 120_000);

afterAll(async () => {
  for (const edge of edges) await edge.close(500);
  await echo.stop();
  await Promise.all(servers.map((s) => s.stop()));
});

describe("one region, two edges, three memcached servers", () => {
  const tokens: string[] = [];

  it("entries spread over the three servers; what one edge validated is a memcached hit at the other, Keystone not asked", async () => {
    const a = await newEdge();
    const b = await newEdge();
    // Random audit ids: drawn until every server is the home of a few.
    const perServer = new Map<string, number>();
    while (
      servers.some((s) => (perServer.get(s.address) ?? 0) < PER_SERVER) ||
      tokens.length < 5 * PER_SERVER
    ) {
      const token = mint();
      tokens.push(token);
      perServer.set(home(token), (perServer.get(home(token)) ?? 0) + 1);
    }
    // Shares near a third each: the draw stops as soon as the rarest has six.
    expect(tokens.length).toBeLessThan(200);
    for (const token of tokens) expect((await status(a.url, token)).status).toBe(200);
    expect(await validations(a.edge, "keystone")).toBe(tokens.length);
    await waitUntil(async () => (await stored(a.edge)) >= tokens.length, 10_000, "edge a's writes");

    // Each entry sits on the server rendezvous hashing names.
    for (const token of tokens) {
      const server = home(token);
      const raw = memjs.Client.create(server, { retries: 1, logger: { log: () => undefined } });
      try {
        const { value } = await raw.get(new CacheKeyer(SECRET).memcachedKey(token));
        expect(value, `${server} holds the entry`).not.toBeNull();
      } finally {
        raw.close();
      }
    }
    for (const token of tokens) expect((await status(b.url, token)).status).toBe(200);
    expect(await validations(b.edge, "memcached")).toBe(tokens.length);
    expect(await validations(b.edge, "keystone")).toBe(0);
  });

  it("one server killed: only its share goes to Keystone, no request fails or stalls, its breaker opens; back, it is used again", async () => {
    const victim = servers[1] as MemcachedHandle;
    const lost = tokens.filter((t) => home(t) === victim.address);
    expect(lost.length).toBeGreaterThanOrEqual(PER_SERVER);
    await victim.stop();
    const c = await newEdge(); // a new edge (empty in-process cache) behind the balancer
    let slowest = 0;
    for (const token of tokens) {
      const answer = await status(c.url, token);
      expect(answer.status).toBe(200);
      slowest = Math.max(slowest, answer.ms);
    }
    expect(await validations(c.edge, "memcached")).toBe(tokens.length - lost.length);
    expect(await validations(c.edge, "keystone")).toBe(lost.length);
    // A refused connection fails at once; no request waited on the dead server for long.
    expect(slowest).toBeLessThan(5_000);
    expect(await breaker(c.edge, victim.address)).toBe("open");
    expect(await breaker(c.edge, (servers[0] as MemcachedHandle).address)).toBe("closed");

    // Back (empty): the breaker's probe finds it, and entries written there are shared again.
    await victim.start();
    const d = await newEdge();
    await waitUntil(
      async () => {
        const token = mint();
        expect((await status(c.url, token)).status).toBe(200);
        return (await breaker(c.edge, victim.address)) === "closed";
      },
      20_000,
      "edge c to use the returned server again",
      250,
    );
    let fresh = mint();
    while (home(fresh) !== victim.address) fresh = mint();
    const before = await stored(c.edge);
    expect((await status(c.url, fresh)).status).toBe(200);
    await waitUntil(async () => (await stored(c.edge)) > before, 5_000, "edge c's write");
    const hitsBefore = await validations(d.edge, "memcached");
    expect((await status(d.url, fresh)).status).toBe(200);
    expect(await validations(d.edge, "memcached")).toBe(hitsBefore + 1);
  }, 60_000);
});
