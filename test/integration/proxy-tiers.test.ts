/**
 * The shared tier and the master's absence, through the whole edge: two edges share one
 * real memcached (sealed entries), memcached going away costs nothing but misses, an entry
 * rewritten without the secret is refused, and with Keystone stopped cached tokens keep
 * working while unknown ones get 503. Uses its own Keystone, which it stops.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import memjs from "memjs";
import { CacheKeyer } from "../../src/cache/token-key.js";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { issueToken } from "../harness/client.js";
import { startTestEdge } from "../harness/test-edge.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { startKeystone, type KeystoneHandle } from "../harness/keystone.js";
import { startMemcached, type MemcachedHandle } from "../harness/memcached.js";
import { waitUntil } from "../harness/wait.js";

const SECRET = "a-shared-secret-of-at-least-16";
let keystone: KeystoneHandle;
let memcached: MemcachedHandle;
let echo: EchoUpstream;
const edges: RunningEdge[] = [];

async function newEdge(): Promise<{ edge: RunningEdge; url: string }> {
  const started = await startTestEdge(
    edgeConfigDocument(keystone.info, {
      upstream: echo.url,
      user: adminUser(keystone.info),
      timeoutMs: 3_000,
      // contexts off: these tests are about the token's own memcached entry (shared
      // contexts have their own, in context-cache.test.ts)
      cache: {
        memcached_servers: [memcached.address],
        memcache_secret_key: SECRET,
        context_cache_time: 0,
      },
    }),
  );
  edges.push(started.edge);
  return started;
}

async function status(url: string, token: string): Promise<number> {
  const res = await fetch(`${url}/v2.1/servers`, { headers: { "X-Auth-Token": token } });
  await res.arrayBuffer();
  return res.status;
}

async function counter(
  edge: RunningEdge,
  name: "validations" | "memcachedErrors",
  labels: Record<string, string>,
) {
  const metric = await edge.metrics[name].get();
  return metric.values
    .filter((v) =>
      Object.entries(labels).every(
        ([k, val]) => (v.labels as Record<string, string | number | undefined>)[k] === val,
      ),
    )
    .reduce((a, v) => a + v.value, 0);
}

beforeAll(async () => {
  keystone = await startKeystone();
  memcached = await startMemcached();
  echo = await startEchoUpstream();
}, 300_000);

afterAll(async () => {
  for (const e of edges) await e.close(500);
  await echo.stop();
  await memcached.stop();
  await keystone.stop();
});

describe("memcached, shared between edges", () => {
  it("a token validated by one edge is found by another in memcached, without Keystone", async () => {
    const a = await newEdge();
    const b = await newEdge();
    const { token } = await issueToken(keystone.info, {
      kind: "project",
      name: "admin",
      domainId: "default",
    });
    expect(await status(a.url, token)).toBe(200);
    expect(await counter(a.edge, "validations", { source: "keystone", result: "valid" })).toBe(1);
    // The write to memcached is asynchronous: wait for it (contexts are off: one entry).
    await waitUntil(
      async () =>
        (await a.edge.metrics.memcachedCalls.get()).values.some(
          (v) =>
            v.metricName === "keystone_edge_memcached_call_duration_seconds_count" &&
            v.labels.op === "set" &&
            v.labels.outcome === "stored" &&
            v.value >= 1,
        ),
      5_000,
      "edge a's memcached write",
    );
    expect(await status(b.url, token)).toBe(200);
    expect(await counter(b.edge, "validations", { source: "memcached", result: "valid" })).toBe(1);
    expect(await counter(b.edge, "validations", { source: "keystone" })).toBe(0);
  });

  it("an entry rewritten without the secret is refused, counted, and Keystone asked instead", async () => {
    const { token } = await issueToken(keystone.info, {
      kind: "project",
      name: "admin",
      domainId: "default",
    });
    const key = new CacheKeyer(SECRET).keys(token).memcachedKey;
    const client = memjs.Client.create(memcached.address, { retries: 1 });
    // A forged entry claiming to be another user, written by someone without the secret.
    await client.set(key, Buffer.from(JSON.stringify({ token: { user: { id: "mallory" } } })), {
      expires: 300,
    });
    client.close();
    const c = await newEdge();
    expect(await status(c.url, token)).toBe(200);
    expect(await counter(c.edge, "memcachedErrors", { kind: "malformed" })).toBe(1);
    expect(await counter(c.edge, "validations", { source: "keystone", result: "valid" })).toBe(1);
  });

  it("memcached stopped: requests keep working", async () => {
    const d = await newEdge();
    await memcached.stop();
    try {
      const { token } = await issueToken(keystone.info, {
        kind: "project",
        name: "admin",
        domainId: "default",
      });
      const started = Date.now();
      for (let i = 0; i < 20; i++) expect(await status(d.url, token)).toBe(200);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(await counter(d.edge, "validations", { source: "keystone", result: "valid" })).toBe(1);
      expect(await counter(d.edge, "validations", { source: "l1", result: "valid" })).toBe(19);
    } finally {
      await memcached.start();
    }
  });
});

describe("Keystone stopped", () => {
  it("cached tokens keep working, unknown ones get 503, garbage still 401", async () => {
    const e = await newEdge();
    const known = (
      await issueToken(keystone.info, { kind: "project", name: "admin", domainId: "default" })
    ).token;
    const unknown = (await issueToken(keystone.info, { kind: "system" })).token;
    expect(await status(e.url, known)).toBe(200);
    await keystone.stop();
    expect(await status(e.url, known)).toBe(200);
    expect(await status(e.url, unknown)).toBe(503);
    expect(await status(e.url, "garbage")).toBe(401);
  });
});
